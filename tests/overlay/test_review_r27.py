"""Review r27: the mock's bounded stores (max_events) and Togai attributes as a map or struct.

Tests of the defects it found (each failed before its fix) and of the hostile cases that held.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from contract.mock_support import AUTH, LAGO, TOGAI, TOKEN, assert_matches, lago_event, togai_event
from starlette.applications import Starlette

from billing_events.cli._columnar import row_to_event
from billing_events.mock import MockConfig
from billing_events.mock.config import FaultConfig
from billing_events.mock.server import config_from_env
from billing_events.mock.testing import LAGO_STORES, mock_app, sync_transport

LIMIT_MESSAGE = "the mock holds its limit of {} events (max_events); POST /_mock/reset forgets them"


@pytest.fixture
def clients() -> Iterator[list[httpx.Client]]:
    made: list[httpx.Client] = []
    yield made
    for client in made:
        client.close()


def _client(clients: list[httpx.Client], app: Starlette) -> httpx.Client:
    client = httpx.Client(transport=sync_transport(app), base_url="http://mock", headers=AUTH)
    clients.append(client)
    return client


def _stats(client: httpx.Client, provider: str) -> dict[str, Any]:
    stats: dict[str, Any] = client.get("/_mock/stats").json()[provider]
    return stats


# ---- the store limit: defects ---------------------------------------------------------------------


def test_an_odd_max_events_variable_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="MOCK_MAX_EVENTS"):
        config_from_env({"MOCK_MAX_EVENTS": "²"})


# ---- the store limit: hostile cases that hold --------------------------------------------------


@pytest.mark.parametrize("lago_store", LAGO_STORES)
def test_threads_racing_for_the_last_room_never_pass_the_limit(
    clients: list[httpx.Client], lago_store: str
) -> None:
    app = mock_app(lago_store, token=TOKEN, max_events=40)
    threads, rounds, size = 4, 4, 7
    codes: dict[str, list[int]] = {"togai": [], "lago": []}
    lock = threading.Lock()
    barrier = threading.Barrier(threads)
    per_thread = [_client(clients, app) for _ in range(threads)]

    def work(number: int) -> None:
        client = per_thread[number]
        barrier.wait()
        for turn in range(rounds):
            numbers = [number * 1000 + turn * 100 + i for i in range(size)]
            togai = client.post(f"{TOGAI}/ingestBatch", json={"events": [togai_event(n) for n in numbers]})
            lago = client.post(f"{LAGO}/events/batch", json={"events": [lago_event(n) for n in numbers]})
            with lock:
                codes["togai"].append(togai.status_code)
                codes["lago"].append(lago.status_code)

    workers = [threading.Thread(target=work, args=(number,)) for number in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    admin = per_thread[0]
    assert sorted(set(codes["togai"])) == [202, 503]
    assert sorted(set(codes["lago"])) == [200, 503]
    assert _stats(admin, "togai")["stored"] == codes["togai"].count(202) * size <= 40
    assert _stats(admin, "lago")["stored"] == codes["lago"].count(200) * size <= 40
    assert _stats(admin, "togai")["requests"] == threads * rounds


def test_a_refused_togai_207_batch_stores_nothing_and_counts_no_duplicate(
    clients: list[httpx.Client],
) -> None:
    client = _client(clients, mock_app(token=TOKEN, max_events=2))
    client.post(f"{TOGAI}/ingest", json={"event": togai_event(1)})
    keyless = {name: value for name, value in togai_event(9).items() if name != "id"}

    refused = client.post(
        f"{TOGAI}/ingestBatch",
        json={"events": [togai_event(1), {"bad": 1}, togai_event(2), togai_event(2), keyless]},
    )

    assert refused.status_code == 503
    assert refused.json() == {"message": LIMIT_MESSAGE.format(2)}
    assert_matches("togai", "ErrorResponse", refused.json())
    assert _stats(client, "togai") == {"stored": 1, "duplicates": 0, "requests": 2}
    # The same batch without the keyless event fits: a repeat inside it takes no room.
    fits = client.post(
        f"{TOGAI}/ingestBatch", json={"events": [togai_event(1), {"bad": 1}, togai_event(2), togai_event(2)]}
    )
    assert fits.status_code == 207
    assert _stats(client, "togai") == {"stored": 2, "duplicates": 2, "requests": 3}


def test_clickhouse_repeats_inside_a_batch_take_one_room_and_a_refusal_writes_no_row(
    clients: list[httpx.Client],
) -> None:
    client = _client(clients, mock_app("clickhouse", token=TOKEN, max_events=2))

    fits = client.post(f"{LAGO}/events/batch", json={"events": [lago_event(1), lago_event(1), lago_event(2)]})
    refused = client.post(f"{LAGO}/events/batch", json={"events": [lago_event(1), lago_event(3)]})

    assert (fits.status_code, refused.status_code) == (200, 503)
    assert_matches("lago", "ApiErrorServiceUnavailable", refused.json())
    stats = _stats(client, "lago")
    assert (stats["stored"], stats["duplicates"], stats["arrivals"], stats["requests"]) == (2, 1, 3, 2)
    assert client.get(f"{LAGO}/events/txn_3").status_code == 404


def test_postgres_events_without_a_subscription_each_take_room(clients: list[httpx.Client]) -> None:
    client = _client(clients, mock_app(token=TOKEN, max_events=2))
    unscoped = {name: value for name, value in lago_event(1).items() if name != "external_subscription_id"}

    codes = [client.post(f"{LAGO}/events", json={"event": unscoped}).status_code for _ in range(3)]
    repeat = client.post(f"{LAGO}/events/batch", json={"events": [lago_event(5), lago_event(5)]})

    assert codes == [200, 200, 503]
    assert repeat.status_code == 422  # a repeat in the batch is answered before the limit is looked at
    assert _stats(client, "lago")["stored"] == 2


def test_reset_and_a_lago_store_switch_keep_the_limit(clients: list[httpx.Client]) -> None:
    client = _client(clients, mock_app(token=TOKEN, max_events=1))
    client.put("/_mock/lago_store", json={"store": "clickhouse"})
    switched = [client.post(f"{LAGO}/events", json={"event": lago_event(n)}).status_code for n in (1, 2)]
    client.post("/_mock/reset")
    reset = [client.post(f"{TOGAI}/ingest", json={"event": togai_event(n)}).status_code for n in (1, 2)]

    assert switched == [200, 503]
    assert reset == [202, 503]


def test_a_lost_response_to_a_refused_request_stores_nothing(clients: list[httpx.Client]) -> None:
    faults = FaultConfig(rate_lost_response=1.0)
    client = _client(clients, mock_app(token=TOKEN, max_events=1, faults=faults))

    for number in (1, 2):
        with pytest.raises(httpx.TransportError):
            client.post(f"{TOGAI}/ingest", json={"event": togai_event(number)})

    assert [event["id"] for event in client.get("/_mock/events/togai").json()] == ["evt_1"]


def test_each_store_warns_once_and_never_logs_the_token(
    clients: list[httpx.Client], caplog: pytest.LogCaptureFixture
) -> None:
    client = _client(clients, mock_app("clickhouse", token=TOKEN, max_events=1))
    with caplog.at_level(logging.DEBUG, logger="billing_events.mock"):
        for number in (1, 2, 3):
            client.post(f"{TOGAI}/ingest", json={"event": togai_event(number)})
            client.post(f"{LAGO}/events", json={"event": lago_event(number)})

    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings == [f"togai: {LIMIT_MESSAGE.format(1)}", f"lago: {LIMIT_MESSAGE.format(1)}"]
    assert not [record for record in caplog.records if TOKEN in record.getMessage()]


def test_max_events_settings_are_checked_by_name() -> None:
    for wrong in ("5", -3, 1.0):
        with pytest.raises(ValueError, match="max_events: must be a positive int or None"):
            MockConfig(max_events=wrong)  # type: ignore[arg-type]
    assert mock_app(max_events=None).state.mock.config.max_events is None
    assert config_from_env({"MOCK_MAX_EVENTS": ""})[0].max_events == 1_000_000
    for bad in ("0x10", "+5", "1e3"):
        with pytest.raises(ValueError, match="MOCK_MAX_EVENTS must be a positive number"):
            config_from_env({"MOCK_MAX_EVENTS": bad})


# ---- attributes as a map or struct ----------------------------------------------------------------

ROW = {"schemaName": "api_calls", "id": "evt_1", "accountId": "acme", "timestamp": "2024-05-01T10:15:30Z"}


def test_a_long_attribute_name_keeps_the_rule_in_the_message() -> None:
    event, problem = row_to_event("togai", {**ROW, "attributes": {"n" * 5000: {"nested": 1}}})

    assert event is None
    assert problem is not None
    assert "expected text or a number" in problem


def test_a_unit_for_an_attribute_of_the_map_is_not_dropped_silently() -> None:
    # As a Dask bag row reaches row_to_event (backfill.partition._row_event): no header check runs.
    event, problem = row_to_event("togai", {**ROW, "attributes": {"calls": 3}, "unit.calls": "Milliseconds"})

    assert problem is not None or event == {
        **ROW,
        "attributes": [{"name": "calls", "value": "3", "unit": "Milliseconds"}],
        "dimensions": {},
    }


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ([("calls", 1.5), ("gb", 1e-5)], [("calls", "1.5"), ("gb", "0.00001")]),  # pandas' map pairs
        ({"calls": 2, "gb": None}, [("calls", "2")]),  # a dict in a bag row; a null is left out
        ({}, []),
        ([], []),  # an empty map and an empty list of structs look alike: both are no attribute
        ([{"name": "calls", "value": "1", "unit": "Seconds"}], [("calls", "1")]),
    ],
)
def test_maps_structs_and_lists_in_rows(attributes: object, expected: list[tuple[str, str]]) -> None:
    event, problem = row_to_event("togai", {**ROW, "attributes": attributes})

    assert problem is None
    assert event is not None
    assert [(attribute["name"], attribute["value"]) for attribute in event["attributes"]] == expected


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"attributes": [("calls", 1), ("calls", 2)]},
            "attributes: the map holds the key 'calls' more than once",
        ),
        ({"attributes": {"calls": {"a": 1}}}, "attributes.calls: expected text or a number, got dict"),
        ({"attributes": {"calls": [1]}}, "attributes.calls: expected text or a number, got list"),
        ({"attributes": {"calls": True}}, "attributes.calls: expected text or a number, got bool"),
        ({"attributes": {"calls": 1}, "attr.calls": 2}, "attr.calls: attributes holds the same field too"),
        ({"attributes": ("calls", 1)}, "attributes: expected a list of structs (name, value, unit) or a map"),
    ],
)
def test_bad_maps_in_rows_are_refused_naming_the_field(row: dict[str, object], message: str) -> None:
    event, problem = row_to_event("togai", {**ROW, **row})

    assert event is None
    assert problem is not None
    assert problem.startswith(message)


@pytest.mark.parametrize("single", [{"value": "3", "unit": "Seconds"}, {"name": "calls", "unit": "Seconds"}])
def test_one_attribute_struct_without_its_name_or_value_is_refused_too(single: dict[str, str]) -> None:
    # Read as a map it would bill attributes called value and unit, or name and unit.
    event, problem = row_to_event("togai", {**ROW, "attributes": single})

    assert event is None
    assert problem is not None and problem.startswith("attributes: one struct (name, value, unit)")
