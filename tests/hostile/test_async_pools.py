"""The async clients' connections: one pool per request in flight (``ShardedAsyncTransport``).

Each request takes a small pool of its own, so httpcore's walk over a pool's connections stays
short; these tests hold the pools to what one shared pool promised: connections kept alive and
reused, never more of them than requests in flight (up to the cap), and every pool handed back
however its request ends.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import httpx
import pytest
from cli.support import togai_event

from billing_events import AsyncTogai, RetryPolicy
from billing_events import _constants as C
from billing_events._network import ShardedAsyncTransport
from hostile.conftest import TOKEN
from hostile.server import Answer, HostileServer

FAST = RetryPolicy(max_attempts=4, deadline=20.0, initial_delay=0.01, max_delay=0.02)


def test_requests_in_flight_keep_their_connections(hostile: HostileServer) -> None:
    async def run() -> list[str]:
        statuses: list[str] = []
        async with AsyncTogai(TOKEN, base_url=hostile.url, timeout=10.0) as client:
            for round_ in range(10):
                reports = await asyncio.gather(
                    *(client.send([togai_event(round_ * 4 + lane)]) for lane in range(4))
                )
                statuses += [o.status.value for report in reports for o in report]
        return statuses

    assert asyncio.run(run()) == ["delivered"] * 40
    assert hostile.requests == 40
    # Four at a time, each on a kept-alive connection: never a connection per request.
    assert 1 <= hostile.connections <= 4


def test_more_requests_than_connections_share_the_pools(hostile: HostileServer) -> None:
    count = C.MAX_CONNECTIONS + 8

    async def run() -> list[str]:
        async with AsyncTogai(TOKEN, base_url=hostile.url, timeout=10.0) as client:
            reports = await asyncio.gather(*(client.send([togai_event(i)]) for i in range(count)))
            return [o.status.value for report in reports for o in report]

    assert asyncio.run(run()) == ["delivered"] * count
    assert hostile.connections <= C.MAX_CONNECTIONS


def test_failed_and_retried_requests_hand_their_pools_back(hostile: HostileServer) -> None:
    # A 503, a connection reset mid-answer and a bad encoding before each success.
    hostile.answer(Answer("error", status=503), Answer("bad_encoding"), Answer("ok"))
    transport = ShardedAsyncTransport(httpx.Limits(max_connections=4), None)

    async def run() -> list[str]:
        async with AsyncTogai(
            TOKEN, base_url=hostile.url, timeout=10.0, retry=FAST, transport=transport
        ) as client:
            reports = await asyncio.gather(*(client.send([togai_event(i)]) for i in range(6)))
            return [o.status.value for report in reports for o in report]

    assert asyncio.run(run()) == ["delivered"] * 6
    assert transport.in_flight == 0


def test_a_cancelled_request_hands_its_pool_back(hostile: HostileServer) -> None:
    hostile.answer(Answer("trickle", interval=0.5))
    transport = ShardedAsyncTransport(httpx.Limits(max_connections=2), None)

    async def run() -> list[str]:
        async with httpx.AsyncClient(transport=transport, base_url=hostile.url) as http:
            sending = asyncio.ensure_future(http.post("/ingest", content=b"{}"))
            assert await asyncio.to_thread(hostile.arrived.acquire, True, 10)  # it reached the server
            sending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await sending
            assert transport.in_flight == 0
            hostile.answer(Answer("ok"))
            answers = await asyncio.gather(
                *(http.post("/ingest", content=b'{"events":[]}') for _ in range(3))
            )
            return [str(answer.status_code) for answer in answers]

    assert asyncio.run(run()) == ["200"] * 3
    assert transport.in_flight == 0


def test_pools_without_a_connection_limit_still_send_side_by_side(hostile: HostileServer) -> None:
    # Trickled answers: each request holds its connection for a while.
    hostile.answer(Answer("trickle", interval=0.005))
    transport = ShardedAsyncTransport(httpx.Limits(max_connections=None), None)

    async def run() -> int:
        async with httpx.AsyncClient(transport=transport, base_url=hostile.url, timeout=30.0) as http:
            sending = [asyncio.ensure_future(http.post("/ingest", content=b"{}")) for _ in range(8)]
            # All eight reach the server while the first answer is still trickling.
            for _ in range(8):
                assert await asyncio.to_thread(hostile.arrived.acquire, True, 10)
            answers = await asyncio.gather(*sending)
            return sum(answer.status_code == 200 for answer in answers)

    assert asyncio.run(run()) == 8
    assert hostile.connections == 8


def test_the_pools_of_one_client_share_one_verified_tls_context(
    hostile: HostileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each context loads the CA bundle (about 17 ms of CPU): 16 pools once cost a fresh client 270 ms.
    made: list[ssl.SSLContext] = []
    create = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(create(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    transport = ShardedAsyncTransport(httpx.Limits(max_connections=None), None)

    async def run() -> list[str]:
        async with AsyncTogai(TOKEN, base_url=hostile.url, timeout=10.0, transport=transport) as client:
            # Eight requests at once, each answer's head taking about a second: eight pools.
            hostile.answer(Answer("slow_head", interval=0.004))
            reports = await asyncio.gather(*(client.send([togai_event(i)]) for i in range(8)))
            return [o.status.value for report in reports for o in report]

    assert asyncio.run(run()) == ["delivered"] * 8
    assert hostile.connections == 8
    assert len(made) == 1
    assert made[0].verify_mode == ssl.CERT_REQUIRED and made[0].check_hostname
