"""The pytest plugin as users meet it: a separate test project that only uses the fixtures."""

from __future__ import annotations

import pytest

# A user's test module: sends through our clients and plain httpx, asserts stored events, faults, stores.
USER_TESTS = """
import asyncio

import httpx
import pytest

from billing_events import OutcomeStatus, RetryPolicy

TOGAI_EVENTS = [
    {
        "schemaName": "api_calls",
        "id": f"evt-{n}",
        "timestamp": "2024-05-01T10:15:30Z",
        "accountId": "acme",
        "attributes": [{"name": "calls", "value": "1"}],
        "dimensions": {"region": "eu"},
    }
    for n in range(3)
]
LAGO_EVENTS = [
    {"transaction_id": f"txn-{n}", "external_subscription_id": "sub-1", "code": "calls", "timestamp": 1714558530}
    for n in range(3)
]


def test_togai_client_in_process(togai_mock):
    assert togai_mock.base_url.endswith("/togai") and togai_mock.token
    assert togai_mock.client.send(TOGAI_EVENTS).ok
    togai_mock.assert_stored(TOGAI_EVENTS)


def test_togai_plain_httpx_over_http(togai_mock_server):
    assert togai_mock_server.base_url.startswith("http://127.0.0.1:")
    with httpx.Client(headers={"Authorization": f"Bearer {togai_mock_server.token}"}) as http:
        response = http.post(f"{togai_mock_server.base_url}/ingestBatch", json={"events": TOGAI_EVENTS[:2]})
    assert response.is_success
    assert togai_mock_server.stored_keys() == {"evt-0", "evt-1"}


def test_lago_async_client_over_http(lago_mock_server):
    async def send():
        return await lago_mock_server.async_client.send(LAGO_EVENTS)

    assert asyncio.run(send()).ok
    lago_mock_server.assert_stored(["txn-0", "txn-1", "txn-2"])


def test_lago_plain_async_httpx_in_process(lago_mock):
    async def send():
        async with lago_mock.async_http_client() as http:
            return await http.post("/events", json={"event": LAGO_EVENTS[0]})

    assert asyncio.run(send()).is_success
    lago_mock.assert_stored(LAGO_EVENTS[:1])


@pytest.mark.parametrize("lago_mock", ["postgres", "clickhouse"], indirect=True)
def test_a_resend_is_stored_once_in_both_lago_stores(lago_mock, request):
    assert lago_mock.store == request.node.callspec.params["lago_mock"]
    assert lago_mock.client.send(LAGO_EVENTS).ok
    assert lago_mock.client.send(LAGO_EVENTS).ok
    lago_mock.assert_stored(LAGO_EVENTS)
    assert lago_mock.stats()["duplicates"] == 3


def test_switching_the_store(lago_mock):
    lago_mock.set_store("clickhouse")
    assert lago_mock.store == "clickhouse"
    with lago_mock.http_client() as http:
        for _ in range(2):
            assert http.post("/events", json={"event": LAGO_EVENTS[0]}).is_success
    assert lago_mock.stats()["arrivals"] == 2
    assert lago_mock.stored_keys() == {"txn-0"}


def test_faults_reach_plain_httpx_and_our_client(togai_mock_server):
    togai_mock_server.set_faults(rate_429=1.0, retry_after=0)
    with togai_mock_server.http_client() as http:
        assert http.post("/ingestBatch", json={"events": TOGAI_EVENTS}).status_code == 429
    client = togai_mock_server.new_client(retry=RetryPolicy(max_attempts=1))
    report = client.send(TOGAI_EVENTS)
    assert not report.ok and report.counts[OutcomeStatus.FAILED] == 3
    togai_mock_server.clear_faults()
    assert client.send(TOGAI_EVENTS).ok
    togai_mock_server.assert_stored(TOGAI_EVENTS)


def test_rate_limits_through_the_handle(lago_mock):
    lago_mock.set_rate_limits(enabled=True, limits={"lago.create_batch_events": 1})
    with lago_mock.http_client() as http:
        answers = [http.post("/events/batch", json={"events": [event]}).status_code for event in LAGO_EVENTS]
    assert answers[0] == 200 and 429 in answers[1:]
    counted = lago_mock.rate_counters()["seconds"]
    assert sum(g["lago.create_batch_events"]["throttled"] for g in counted.values()) >= 1


def test_assert_stored_names_what_differs(togai_mock):
    togai_mock.client.send(TOGAI_EVENTS[:2])
    with pytest.raises(AssertionError, match="not stored: 'evt-2'; stored but not expected: 'evt-0'$"):
        togai_mock.assert_stored(["evt-1", "evt-2"])


def test_every_test_gets_a_fresh_mock(togai_mock):
    assert togai_mock.stored() == [] and togai_mock.stats()["requests"] == 0
"""


def test_the_fixtures_in_a_users_test_project(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_billing=USER_TESTS)

    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")

    result.assert_outcomes(passed=11)


def test_the_fixtures_are_listed_with_their_docs(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_inprocess("--fixtures", "-p", "no:cacheprovider")

    result.stdout.fnmatch_lines(
        [
            "*togai_mock*",
            "*A fresh in-process Togai mock*",
            "*lago_mock_server*",
        ]
    )
