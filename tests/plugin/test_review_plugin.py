"""Review of the pytest fixtures and `ProviderMock` as a demanding user meets them.

Tests of the defects it found (each failed before its fix) and of the hostile cases that held. No test sleeps to wait for a thread: waits are on events or joins, each bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
from typing import Any

import httpx
import pytest

from billing_events import OutcomeStatus, RetryPolicy
from billing_events.mock import ProviderMock
from billing_events.mock.config import FaultConfigError
from billing_events.mock.jsonio import dump_json
from billing_events.mock.ratelimit import RateLimitConfigError
from billing_events.mock.testing import LAGO_STORES

TOGAI_EVENTS = [
    {
        "schemaName": "api_calls",
        "id": f"evt-{n}",
        "timestamp": "2024-05-01T10:15:30Z",
        "accountId": "acme",
        "attributes": [{"name": "calls", "value": "1"}],
        "dimensions": {},
    }
    for n in range(3)
]
LAGO_EVENTS = [
    {
        "transaction_id": f"txn-{n}",
        "external_subscription_id": "sub_acme",
        "code": "seats",
        "timestamp": 1714558530,
        "properties": {"seats": n},
    }
    for n in range(3)
]
ONE_ATTEMPT = RetryPolicy(max_attempts=1)
# The longest any bounded wait here may take; a fixed mock answers far sooner.
BOUND = 10.0
MOCK_THREADS = ("mock-server-", "mock-transport-loop")


def mock_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(MOCK_THREADS)]


def arrival_event(mock: ProviderMock) -> threading.Event:
    """Set once a request reaches the mock (counted before any fault latency)."""
    arrived = threading.Event()
    store = mock.state.togai if mock.provider == "togai" else mock.state.lago
    count_request = store.count_request

    def counting() -> None:
        count_request()
        arrived.set()

    store.count_request = counting  # type: ignore[method-assign]
    return arrived


# -- defects ------------------------------------------------------------------------------------------


def test_reset_forgets_rate_limits_and_their_counters(togai_mock: ProviderMock) -> None:
    togai_mock.set_rate_limits(enabled=True, limits={"togai.ingest": 1})
    with togai_mock.http_client() as http:
        answers = [http.post("/ingest", json={"event": TOGAI_EVENTS[0]}).status_code for _ in range(2)]
    assert answers == [202, 429]

    togai_mock.reset()

    counters = togai_mock.rate_counters()
    assert counters["seconds"] == {}
    assert counters["config"]["enabled"] is False


def test_editing_stored_events_leaves_the_mock_alone(lago_mock: ProviderMock) -> None:
    assert lago_mock.client.send(LAGO_EVENTS).ok
    for event in lago_mock.stored():  # e.g. to compare without the server-made fields
        event.pop("lago_id", None)
        event["properties"]["seats"] = 99

    with lago_mock.http_client() as http:
        found = http.get("/events/txn-1").json()["event"]

    assert found["lago_id"]
    assert found["properties"] == {"seats": 1}


def test_new_async_client_works_from_a_second_event_loop(togai_mock_server: ProviderMock) -> None:
    client = togai_mock_server.new_async_client(retry=ONE_ATTEMPT)

    assert asyncio.run(client.send(TOGAI_EVENTS[:1])).ok
    report = asyncio.run(client.send(TOGAI_EVENTS[1:]))

    assert report.ok, report.counts
    togai_mock_server.assert_stored(TOGAI_EVENTS)


def test_closing_the_mock_closes_the_async_clients_it_made() -> None:
    mock = ProviderMock.create_served("togai")
    client = mock.new_async_client(retry=ONE_ATTEMPT)
    http = mock.async_http_client()

    async def use() -> None:
        assert (await client.send(TOGAI_EVENTS[:1])).ok
        assert (await http.post("/ingest", json={"event": TOGAI_EVENTS[1]})).status_code == 202

    try:
        asyncio.run(use())
    finally:
        mock.close()

    assert client.http.is_closed and http.is_closed


def test_in_process_http_client_honours_its_timeout(togai_mock: ProviderMock) -> None:
    togai_mock.set_faults(latency_ms=1500)

    with togai_mock.http_client(timeout=0.2) as http, pytest.raises(httpx.TimeoutException):
        http.post("/ingest", json={"event": TOGAI_EVENTS[0]})


def test_in_process_client_gives_up_at_its_timeout(togai_mock: ProviderMock) -> None:
    togai_mock.set_faults(latency_ms=1500)
    client = togai_mock.new_client(timeout=0.2, retry=ONE_ATTEMPT)

    report = client.send(TOGAI_EVENTS[:1])

    assert report.counts[OutcomeStatus.UNKNOWN] == 1
    assert togai_mock.stored() == []  # the mock has not answered yet: the call ended at its timeout


@pytest.mark.parametrize("served", [False, True], ids=["in-process", "served"])
def test_closing_a_mock_ends_a_request_in_flight(served: bool) -> None:
    before = mock_threads()
    mock = ProviderMock.create_served("togai") if served else ProviderMock.create_in_process("togai")
    mock.set_faults(latency_ms=60_000)
    arrived = arrival_event(mock)
    client = mock.new_client(retry=ONE_ATTEMPT, timeout=120)
    reports: list[Any] = []
    sender = threading.Thread(target=lambda: reports.append(client.send(TOGAI_EVENTS[:1])), daemon=True)
    sender.start()
    assert arrived.wait(BOUND)

    mock.close()  # what the fixture's teardown does
    sender.join(BOUND)

    assert not sender.is_alive(), "the sending thread still waits on the closed mock"
    assert reports[0].counts[OutcomeStatus.UNKNOWN] == 1
    assert mock_threads() == before


def test_new_client_takes_a_token_option(togai_mock: ProviderMock) -> None:
    client = togai_mock.new_client(token="not-the-mock-token", retry=ONE_ATTEMPT)

    report = client.send(TOGAI_EVENTS[:1])

    assert report.counts[OutcomeStatus.FAILED] == 1
    assert togai_mock.stored() == []


def test_http_client_takes_extra_headers(togai_mock: ProviderMock) -> None:
    with togai_mock.http_client(headers={"X-Request-Id": "req-1"}) as http:
        response = http.post("/ingest", json={"event": TOGAI_EVENTS[0]})

    assert response.status_code == 202
    assert response.request.headers["X-Request-Id"] == "req-1"


def test_assert_stored_with_one_key_as_a_string(togai_mock: ProviderMock) -> None:
    assert togai_mock.client.send(TOGAI_EVENTS[:1]).ok

    # Refusing a bare string is as good as taking it as one key.
    with contextlib.suppress(TypeError):
        togai_mock.assert_stored("evt-0")


def test_a_served_mock_leaves_uvicorn_log_levels_alone() -> None:
    names = ("uvicorn.error", "uvicorn.access", "uvicorn.asgi")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:  # as a session starts: an earlier served mock may have set them already
            logger.setLevel(logging.NOTSET)
        with ProviderMock.create_served("togai"):
            pass
        assert [logger.level for logger in loggers] == [logging.NOTSET] * len(loggers)
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


# -- hostile cases that hold --------------------------------------------------------------------------

ISOLATION_TESTS = """
import pytest

from billing_events import RetryPolicy

EVENT = {"schemaName": "api_calls", "id": "evt-1", "timestamp": "2024-05-01T10:15:30Z", "accountId": "acme",
         "attributes": [], "dimensions": {}}


def test_a_leaves_everything_changed(togai_mock, lago_mock_server):
    togai_mock.set_faults(rate_503=1.0, retry_after=0, seed=5)
    togai_mock.set_rate_limits(enabled=True, limits={"togai.ingest": 1})
    lago_mock_server.set_store("clickhouse")
    lago_mock_server.set_faults(rate_429=1.0)
    assert not togai_mock.new_client(retry=RetryPolicy(max_attempts=1)).send([EVENT]).ok
    assert togai_mock.stats()["requests"] == 1


def test_b_gets_fresh_mocks(togai_mock, lago_mock_server):
    assert togai_mock.faults.rate_503 == 0 and togai_mock.faults.seed == 0
    assert togai_mock.rate_counters() == {"config": togai_mock.rate_counters()["config"], "seconds": {}}
    assert togai_mock.rate_counters()["config"]["enabled"] is False
    assert togai_mock.stats() == {"stored": 0, "duplicates": 0, "requests": 0}
    assert lago_mock_server.store == "postgres" and lago_mock_server.faults.rate_429 == 0
    assert togai_mock.client.send([EVENT]).ok


@pytest.mark.parametrize("lago_mock_server", ["postgres", "clickhouse"], indirect=True)
def test_c_each_store(lago_mock_server, request):
    assert lago_mock_server.store == request.node.callspec.params["lago_mock_server"]
    assert lago_mock_server.stored() == []


@pytest.mark.anyio
async def test_d_in_an_anyio_test(togai_mock, togai_mock_server):
    assert (await togai_mock.async_client.send([EVENT])).ok
    async with togai_mock_server.new_async_client() as client:
        assert (await client.send([EVENT])).ok
    assert togai_mock.client.send([EVENT]).ok  # the sync client from inside a running loop
    togai_mock_server.assert_stored([EVENT])
"""


def test_faults_stores_and_limits_do_not_leak_into_the_next_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_isolation=ISOLATION_TESTS)

    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")

    result.assert_outcomes(passed=5)


@pytest.mark.parametrize("served", [False, True], ids=["in_process", "served"])
def test_no_mock_thread_outlives_the_mock(served: bool) -> None:
    before = mock_threads()
    make = ProviderMock.create_served if served else ProviderMock.create_in_process
    with make("lago") as mock:
        assert mock.client.send(LAGO_EVENTS).ok
        with mock.http_client() as http:
            assert http.get("/events/txn-0").status_code == 200
        assert asyncio.run(mock.async_client.send(LAGO_EVENTS)).ok

    assert mock_threads() == before


def test_two_served_mocks_get_their_own_ports() -> None:
    with ProviderMock.create_served("togai") as first, ProviderMock.create_served("togai") as second:
        assert first.base_url != second.base_url
        assert first.client.send(TOGAI_EVENTS[:1]).ok
        assert second.stored() == []


def test_a_wrong_provider_leaves_no_server_running() -> None:
    before = mock_threads()

    with pytest.raises(ValueError, match="provider"):
        ProviderMock.create_served("stripe")  # type: ignore[arg-type]

    assert mock_threads() == before


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"rate_429": "0.5"}, "rate_429"),
        ({"rate_503": 1.5}, "rate_503"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"seed": 1.5}, "seed"),
        ({"gateway_status": 404}, "gateway_status"),
        ({"rate_lost": 0.1}, "rate_lost"),
        ({"rate_429": 0.6, "rate_drop": 0.6}, "rate_429"),
    ],
)
def test_bad_fault_settings_name_the_setting(
    togai_mock: ProviderMock, settings: dict[str, object], named: str
) -> None:
    with pytest.raises(FaultConfigError, match=named):
        togai_mock.set_faults(**settings)
    assert togai_mock.faults.rate_429 == 0  # nothing of a refused change applies


def test_bad_rate_limits_and_stores_name_the_setting(lago_mock: ProviderMock) -> None:
    with pytest.raises(RateLimitConfigError, match="enabled"):
        lago_mock.set_rate_limits(enabled="yes")
    with pytest.raises(RateLimitConfigError, match=r"lago\.events"):
        lago_mock.set_rate_limits(limits={"lago.events": 1})
    with pytest.raises(ValueError, match="store"):
        lago_mock.set_store("mysql")
    assert lago_mock.store == "postgres"


def statuses(mock: ProviderMock, count: int) -> list[int]:
    with mock.http_client() as http:
        return [http.post("/ingest", json={"event": TOGAI_EVENTS[0]}).status_code for _ in range(count)]


def test_seeded_faults_repeat_exactly(togai_mock: ProviderMock) -> None:
    togai_mock.set_faults(rate_503=0.3, rate_429=0.3, seed=7)
    first = statuses(togai_mock, 20)
    togai_mock.set_faults(seed=7)
    again = statuses(togai_mock, 20)

    with ProviderMock.create_in_process("togai") as other:
        other.set_faults(rate_503=0.3, rate_429=0.3, seed=7)
        elsewhere = statuses(other, 20)

    assert first == again == elsewhere
    assert {202, 429, 503} <= set(first)


@pytest.mark.parametrize("store", LAGO_STORES)
def test_lost_responses_end_unknown_and_are_stored(store: str) -> None:
    with ProviderMock.create_in_process("lago", lago_store=store) as lago:
        lago.set_faults(rate_lost_response=1.0)

        report = lago.new_client(retry=ONE_ATTEMPT).send(LAGO_EVENTS)

        assert report.counts[OutcomeStatus.UNKNOWN] == 3
        lago.assert_stored(LAGO_EVENTS)


@pytest.mark.parametrize("served", [False, True], ids=["in_process", "served"])
def test_a_dropped_connection_is_a_transport_error(served: bool) -> None:
    make = ProviderMock.create_served if served else ProviderMock.create_in_process
    with make("togai") as togai:
        togai.set_faults(rate_drop=1.0)
        with togai.http_client() as http, pytest.raises(httpx.TransportError):
            http.post("/ingest", json={"event": TOGAI_EVENTS[0]})

        async def post() -> None:
            async with togai.async_http_client() as http:
                await http.post("/ingest", json={"event": TOGAI_EVENTS[0]})

        with pytest.raises(httpx.TransportError):
            asyncio.run(post())
        assert togai.stored() == []


def test_the_token_stays_out_of_reprs_and_logs(
    togai_mock_server: ProviderMock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    togai_mock_server.set_faults(rate_503=0.5, retry_after=0, seed=3)
    client = togai_mock_server.new_client(retry=RetryPolicy(max_attempts=2, max_retry_after=0.01))
    client.send([*TOGAI_EVENTS, {"schemaName": "api_calls"}])
    sender = client.background()
    sender.track(TOGAI_EVENTS[0])
    sender.close()
    client.close()

    token = togai_mock_server.token
    shown = [repr(togai_mock_server), repr(client), repr(sender), repr(togai_mock_server.http_client())]
    assert not [text for text in shown if token in text]
    assert caplog.records and token not in caplog.text


def test_background_senders_on_the_fixtures_clients(
    togai_mock: ProviderMock, lago_mock: ProviderMock
) -> None:
    with togai_mock.client.background() as sender:
        for event in TOGAI_EVENTS:
            sender.track(event)
    togai_mock.assert_stored(TOGAI_EVENTS)

    async def track_all() -> None:
        async with lago_mock.async_client.background() as sender:
            for event in LAGO_EVENTS:
                sender.track(event)

    asyncio.run(track_all())
    lago_mock.assert_stored(LAGO_EVENTS)


def test_the_ready_made_async_client_serves_several_event_loops(togai_mock_server: ProviderMock) -> None:
    client = togai_mock_server.async_client

    assert asyncio.run(client.send(TOGAI_EVENTS[:1])).ok
    assert asyncio.run(client.send(TOGAI_EVENTS[1:])).ok
    togai_mock_server.assert_stored(TOGAI_EVENTS)


# -- second reading -----------------------------------------------------------------------------------


def test_stored_copies_what_orjson_cannot_write(lago_mock: ProviderMock) -> None:
    # The mock keeps integers beyond 64 bits exact and lets lone surrogates through, as the server does.
    big = {**LAGO_EVENTS[0], "properties": {"n": 123456789012345678901234567890}}
    odd = {**LAGO_EVENTS[1], "transaction_id": "txn-\ud800"}
    json_type = {"Content-Type": "application/json"}
    with lago_mock.http_client(headers=json_type) as http:
        answers = [
            http.post("/events", content=dump_json({"event": event})).status_code for event in (big, odd)
        ]

    assert answers == [200, 200]
    assert lago_mock.stored()[0]["properties"] == {"n": 123456789012345678901234567890}
    assert lago_mock.stored_keys() == {"txn-0", "txn-\ud800"}


def test_a_transport_dropped_after_its_caller_gave_up_stops_without_an_error(
    togai_mock: ProviderMock,
) -> None:
    togai_mock.set_faults(latency_ms=600)
    before = set(threading.enumerate())

    def give_up_and_drop() -> None:
        client = httpx.Client(
            transport=togai_mock.transport(),
            base_url=togai_mock.base_url,
            headers={"Authorization": f"Bearer {togai_mock.token}"},
            timeout=0.05,
        )
        with pytest.raises(httpx.ReadTimeout):
            client.post("/ingest", json={"event": TOGAI_EVENTS[0]})

    give_up_and_drop()  # dropped unclosed: the last reference to its transport goes on the loop thread
    gc.collect()
    started = [thread for thread in threading.enumerate() if thread not in before]
    for thread in started:
        thread.join(BOUND)

    # The loop thread may have ended already. A stop() that joined its own thread raised there, which pytest
    # reports as an unraisable exception (filterwarnings=error fails the test).
    assert not any(thread.is_alive() for thread in started)


def test_a_served_async_http_client_works_from_two_event_loops(togai_mock_server: ProviderMock) -> None:
    http = togai_mock_server.async_http_client()

    async def post(event: dict[str, Any]) -> int:
        return (await http.post("/ingest", json={"event": event})).status_code

    assert [asyncio.run(post(event)) for event in TOGAI_EVENTS[:2]] == [202, 202]
