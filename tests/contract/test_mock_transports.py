"""billing_events.mock.testing: a real server in a thread, and in-process transports usable from any thread or loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from starlette.applications import Starlette

from billing_events.mock import FaultConfig, MockConfig, MockState, create_app
from billing_events.mock.testing import async_transport, serve_in_thread, sync_transport

from .mock_support import AUTH, LAGO, TOGAI, TOKEN, lago_event, togai_event


def test_serve_in_thread_answers_real_http_and_stops_on_exit(mock_app: Starlette) -> None:
    with serve_in_thread(mock_app) as origin, httpx.Client(base_url=origin, headers=AUTH) as client:
        assert origin.startswith("http://127.0.0.1:")
        ingested = client.post(f"{TOGAI}/ingest", json={"event": togai_event()})
        created = client.post(f"{LAGO}/events", json={"event": lago_event()})
        stats = client.get("/_mock/stats").json()

    assert ingested.status_code == 202
    assert created.status_code == 200
    assert stats["togai"]["stored"] == stats["lago"]["stored"] == 1
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{origin}/_mock/stats")


def test_a_drop_over_real_http_is_a_transport_error_and_is_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(MockConfig(token=TOKEN, faults=FaultConfig(rate_drop=1.0)))

    with caplog.at_level(logging.INFO), serve_in_thread(app) as origin:
        with httpx.Client(base_url=origin, headers=AUTH) as client, pytest.raises(httpx.TransportError):
            client.post(f"{TOGAI}/ingest", json={"event": togai_event()})
        stored = httpx.get(f"{origin}/_mock/stats").json()["togai"]["stored"]

    # Leaving serve_in_thread joined the server thread, so anything it logged is in caplog by now.
    assert stored == 0
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_a_lost_response_over_real_http_stores_the_events() -> None:
    app = create_app(MockConfig(token=TOKEN, faults=FaultConfig(rate_lost_response=1.0)))

    with serve_in_thread(app) as origin, httpx.Client(base_url=origin, headers=AUTH) as client:
        with pytest.raises(httpx.TransportError):
            client.post(f"{LAGO}/events/batch", json={"events": [lago_event(1), lago_event(2)]})
        stored = client.get("/_mock/events/lago").json()

    assert [event["transaction_id"] for event in stored] == ["txn_1", "txn_2"]


def test_the_sync_transport_serves_many_threads_at_once(mock_app: Starlette, mock_state: MockState) -> None:
    with httpx.Client(transport=sync_transport(mock_app), base_url="http://mock", headers=AUTH) as client:

        def send(number: int) -> int:
            return client.post(f"{TOGAI}/ingest", json={"event": togai_event(number)}).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(send, range(200)))

    assert statuses == [202] * 200
    assert mock_state.togai.stats().stored == 200


def test_the_sync_transport_works_inside_a_running_event_loop(mock_app: Starlette) -> None:
    transport = sync_transport(mock_app)

    async def call_synchronously() -> int:
        with httpx.Client(transport=transport, base_url="http://mock", headers=AUTH) as client:
            # Blocking on purpose: code that mixes sync calls into a running loop must still reach the mock.
            return client.post(f"{TOGAI}/ingest", json={"event": togai_event()}).status_code  # noqa: ASYNC212

    assert asyncio.run(call_synchronously()) == 202


def test_the_sync_transport_reads_streamed_request_bodies(mock_app: Starlette, mock_state: MockState) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"event": '
        yield httpx.Request("POST", "/", json=togai_event()).content
        yield b"}"

    with httpx.Client(transport=sync_transport(mock_app), base_url="http://mock", headers=AUTH) as client:
        response = client.post(
            f"{TOGAI}/ingest",
            content=chunks(),
            headers={"Content-Type": "application/json"},
        )

    assert response.status_code == 202
    assert mock_state.togai.events() == [togai_event()]


def test_the_async_transport_round_trips_and_surfaces_drops(mock_app: Starlette) -> None:
    async def scenario() -> tuple[int, type[BaseException] | None]:
        async with httpx.AsyncClient(
            transport=async_transport(mock_app), base_url="http://mock", headers=AUTH
        ) as client:
            created = await client.post(f"{LAGO}/events", json={"event": lago_event()})
            await client.put("/_mock/faults", json={"rate_drop": 1})
            try:
                await client.post(f"{LAGO}/events", json={"event": lago_event(2)})
            except httpx.TransportError as exc:
                return created.status_code, type(exc)
            return created.status_code, None

    status, error = asyncio.run(scenario())

    assert status == 200
    assert error is httpx.RemoteProtocolError


def test_the_async_transport_serves_concurrent_requests(mock_app: Starlette, mock_state: MockState) -> None:
    async def scenario() -> list[int]:
        async with httpx.AsyncClient(
            transport=async_transport(mock_app), base_url="http://mock", headers=AUTH
        ) as client:
            responses = await asyncio.gather(
                *(client.post(f"{LAGO}/events", json={"event": lago_event(n)}) for n in range(50))
            )
        return [response.status_code for response in responses]

    assert asyncio.run(scenario()) == [200] * 50
    assert mock_state.lago.stats().stored == 50
