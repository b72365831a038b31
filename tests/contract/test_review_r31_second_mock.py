"""Second reading (review r31) of the mock fixes: lone surrogates judged on a U+FFFD copy, U+0000 on the
Postgres store, assert_stored's Lago key.

Each test is a strict xfail: it fails on the code it was written against, for the reason in its marker.
"""

from __future__ import annotations

import json

import httpx
import pytest
from starlette.applications import Starlette

from billing_events.mock import ProviderMock

from .mock_support import LAGO, TOGAI, TOKEN, lago_event, seats_event, togai_event


def _post_json(client: httpx.Client, path: str, body: object) -> httpx.Response:
    """The body as json.dumps writes it: a lone surrogate goes out as its `\\ud800` escape, valid JSON."""
    return client.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})


# Two dimension keys (two distinct lone surrogates; written with chr(), as ruff takes the two literals for one
# key) that the U+FFFD copy folds into one: the copy keeps only the later, valid, value.
COLLIDING_DIMENSIONS = {chr(0xD800): 5, chr(0xD801): "eu-west-1"}


@pytest.mark.parametrize("route", ["ingest", "ingestBatch"])
def test_togai_refuses_a_non_string_dimension_beside_another_lone_surrogate_key(
    client: httpx.Client, mock_app: Starlette, route: str
) -> None:
    """`dimensions: {"\\ud800": 5}` gets 400 `5 is not of type "string"`, as Togai refuses it. Add a second
    key `"\\ud801": "eu-west-1"` and the user sees 202 and the event with its number stored: the mock judged
    a copy where both keys became U+FFFD and only the later, valid, value was left. They should see the same
    400 (a dimension is a string of 1-200 characters, whatever its neighbours' names) and nothing stored."""
    event = togai_event(1, dimensions=COLLIDING_DIMENSIONS)
    body = {"event": event} if route == "ingest" else {"events": [event]}

    answer = _post_json(client, f"{TOGAI}/{route}", body)

    assert answer.status_code == 400, answer.text
    assert "string" in answer.json()["message"]
    assert mock_app.state.mock.togai.events() == []


@pytest.mark.parametrize("unknown", [{"note": "a\x00b"}, {"note\x00": 1}], ids=["value", "key"])
def test_postgres_store_takes_an_event_whose_dropped_unknown_key_holds_nul(
    client: httpx.Client, mock_app: Starlette, unknown: dict[str, object]
) -> None:
    """The mock drops an unknown key, as lago-api does (Rails' unpermitted parameters): `note: "ab"` beside a
    valid event gets 200 and the event is stored without it. With `note: "a\\u0000b"` the user sees 422
    `{"note": ["value_is_invalid"]}` and nothing stored, though that text never reaches Postgres on the
    server (the key is dropped before the row is written), which answers 200. They should see 200 and the
    event stored, as with any other unknown key."""
    assert mock_app.state.mock.lago.kind == "postgres"

    answer = _post_json(client, f"{LAGO}/events", {"event": lago_event(1, **unknown)})

    assert answer.status_code == 200, answer.text
    assert [event["transaction_id"] for event in mock_app.state.mock.lago.events()] == ["txn_1"]


def test_assert_stored_tells_clickhouse_events_of_two_codes_apart() -> None:
    """On the ClickHouse store (README: deduplication by subscription, `code`, `transaction_id` and
    `timestamp`) one id sent for two metrics of one subscription is two events, both stored and billed, and
    the mock's own `/_mock/events/lago` lists both. `lago_mock.assert_stored([seats, storage])` fails with
    "stored more than once: 't-1' (subscription 'sub_a')". The user should see it pass: exactly these
    events, each stored once."""
    seats, storage = seats_event("t-1", "sub_a", "seats"), seats_event("t-1", "sub_a", "storage")
    with ProviderMock.create_in_process("lago", token=TOKEN, lago_store="clickhouse") as lago:
        http = lago.http_client()
        assert [http.post("/events", json={"event": event}).status_code for event in (seats, storage)] == [
            200,
            200,
        ]
        assert len(lago.stored()) == 2

        lago.assert_stored([seats, storage])


def test_the_second_review_helpers_reach_the_mock(client: httpx.Client, mock_app: Starlette) -> None:
    """Not a defect: the same events without the odd part are judged as the tests above expect."""
    assert _post_json(client, f"{TOGAI}/ingest", {"event": togai_event(1)}).status_code == 202
    bad = _post_json(client, f"{TOGAI}/ingest", {"event": togai_event(2, dimensions={"\ud800": 5})})
    assert bad.status_code == 400
    assert _post_json(client, f"{LAGO}/events", {"event": lago_event(1, note="ab")}).status_code == 200
    assert "note" not in mock_app.state.mock.lago.events()[0]
