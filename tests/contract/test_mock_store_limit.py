"""The mock's stores keep at most ``max_events`` events: a request that would store more is answered 503."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest
from starlette.applications import Starlette

from billing_events import Lago, RetryPolicy
from billing_events.mock import MockConfig
from billing_events.mock.__main__ import config_from_env
from billing_events.mock.testing import LAGO_STORES, mock_app, sync_transport

from .mock_support import LAGO, TOGAI, TOKEN, lago_event, togai_event

ClientFor = Callable[[Starlette], httpx.Client]


def test_togai_refuses_a_batch_that_would_pass_the_limit_and_stores_none_of_it(
    client_for: ClientFor, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_for(mock_app(token=TOKEN, max_events=3))

    first = client.post(f"{TOGAI}/ingestBatch", json={"events": [togai_event(1), togai_event(2)]})
    # Two new events and a repeat of a stored one: only the new ones need room.
    over = client.post(
        f"{TOGAI}/ingestBatch", json={"events": [togai_event(1), togai_event(3), togai_event(4)]}
    )
    with caplog.at_level(logging.DEBUG, logger="billing_events.mock"):
        # An event without an id takes room of its own.
        keyless = {name: value for name, value in togai_event(5).items() if name != "id"}
        again = client.post(f"{TOGAI}/ingestBatch", json={"events": [keyless, togai_event(4)]})
    repeat = client.post(f"{TOGAI}/ingestBatch", json={"events": [togai_event(1), togai_event(3)]})

    assert first.status_code == 202
    assert over.status_code == 503
    assert over.json() == {
        "message": "the mock holds its limit of 3 events (max_events); POST /_mock/reset forgets them"
    }
    assert again.status_code == 503
    assert repeat.status_code == 202  # one new event fits
    assert sorted(event["id"] for event in client.get("/_mock/events/togai").json()) == [
        "evt_1",
        "evt_2",
        "evt_3",
    ]
    # The first refusal of a store is a WARNING, the next ones are not.
    levels = [record.levelno for record in caplog.records if "limit of 3" in record.getMessage()]
    assert levels == [logging.WARNING, logging.DEBUG]


@pytest.mark.parametrize("lago_store", LAGO_STORES)
def test_lago_stores_refuse_past_the_limit_and_reset_makes_room(
    client_for: ClientFor, lago_store: str
) -> None:
    client = client_for(mock_app(lago_store, token=TOKEN, max_events=2))

    first = client.post(f"{LAGO}/events/batch", json={"events": [lago_event(1), lago_event(2)]})
    over = client.post(f"{LAGO}/events", json={"event": lago_event(3)})
    repeat = client.post(f"{LAGO}/events", json={"event": lago_event(1)})
    client.post("/_mock/reset")
    after_reset = client.post(f"{LAGO}/events", json={"event": lago_event(3)})

    assert first.status_code == 200
    assert over.status_code == 503
    assert over.json() == {
        "status": 503,
        "error": "Service Unavailable: the mock holds its limit of 2 events (max_events);"
        " POST /_mock/reset forgets them",
    }
    # A repeat takes no room: Postgres refuses it as a duplicate, ClickHouse keeps it as the same event.
    assert repeat.status_code == {"postgres": 422, "clickhouse": 200}[lago_store]
    assert after_reset.status_code == 200
    assert [event["transaction_id"] for event in client.get("/_mock/events/lago").json()] == ["txn_3"]


def test_a_sender_ends_refused_events_unknown_and_stores_the_rest() -> None:
    app = mock_app(token=TOKEN, max_events=150)
    client = Lago(
        TOKEN,
        base_url="http://mock/lago/api/v1",
        transport=sync_transport(app),
        retry=RetryPolicy(max_attempts=2, initial_delay=0.0, max_delay=0.0),
    )
    with client:
        report = client.send([lago_event(number) for number in range(200)])

    statuses = [status.value for status in report.statuses]
    # Two batches of 100: the first fits, the second would pass the limit and is refused whole.
    assert statuses == ["delivered"] * 100 + ["unknown"] * 100


def test_the_limit_comes_from_the_environment_and_none_lifts_it() -> None:
    assert config_from_env({})[0].max_events == 1_000_000
    assert config_from_env({"MOCK_MAX_EVENTS": "10"})[0].max_events == 10
    assert config_from_env({"MOCK_MAX_EVENTS": "none"})[0].max_events is None
    for bad in ("0", "-1", "ten", "1.5"):
        with pytest.raises(ValueError, match="MOCK_MAX_EVENTS must be a positive number of events or none"):
            config_from_env({"MOCK_MAX_EVENTS": bad})
    for wrong in (0, True, 2.5):
        with pytest.raises(ValueError, match="max_events: must be a positive int or None"):
            MockConfig(max_events=wrong)  # type: ignore[arg-type]


def test_the_events_listing_pages_with_offset_and_limit(client_for: ClientFor) -> None:
    client = client_for(mock_app(token=TOKEN))
    client.post(f"{TOGAI}/ingestBatch", json={"events": [togai_event(n) for n in range(5)]})

    def ids(query: str) -> list[str]:
        return [event["id"] for event in client.get(f"/_mock/events/togai{query}").json()]

    assert ids("") == [f"evt_{n}" for n in range(5)]
    assert ids("?offset=1&limit=2") == ["evt_1", "evt_2"]
    assert ids("?offset=4") == ["evt_4"]
    assert ids("?limit=0") == []
    assert ids("?offset=9") == []
    refused = client.get("/_mock/events/lago?limit=-1")
    assert refused.status_code == 400
    assert refused.json() == {"message": "limit: expected a whole number, got '-1'"}


def test_a_page_past_any_position_is_empty_not_an_error(client_for: ClientFor) -> None:
    client = client_for(mock_app(token=TOKEN))
    client.post(f"{TOGAI}/ingestBatch", json={"events": [togai_event(n) for n in range(2)]})

    huge = "99999999999999999999"
    pages = [
        client.get(f"/_mock/events/togai?{query}")
        for query in (f"offset={huge}", f"limit={huge}", f"offset=1&limit={2**63 - 1}")
    ]

    assert [(page.status_code, len(page.json())) for page in pages] == [(200, 0), (200, 2), (200, 1)]
