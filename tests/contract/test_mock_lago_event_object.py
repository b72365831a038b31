"""The EventObject the mock answers, field by field as lago-api serializes it, on both event stores.

Sources (getlago/lago-api): `app/serializers/v1/event_serializer.rb` (the fields and their formats),
`app/controllers/api/v1/events_controller.rb` (`show` reads `Event` on Postgres, `Clickhouse::EventsRaw` on
ClickHouse), `app/models/clickhouse/events_raw.rb` (a raw row's `id` and `created_at`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette

from billing_events.mock.testing import LAGO_STORES, mock_app, sync_transport

from .mock_support import AUTH, LAGO, TOKEN, lago_event

ClientFor = Callable[[Starlette], httpx.Client]
# Rails' `Time#iso8601` with no digits: whole seconds, in UTC.
WHOLE_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _within(text: str, before: datetime, after: datetime) -> bool:
    moment = datetime.fromisoformat(text)
    return before.replace(microsecond=0) <= moment <= after + timedelta(seconds=1)


@pytest.mark.parametrize("lago_store", LAGO_STORES)
def test_created_at_is_answered_in_whole_seconds(client_for: ClientFor, lago_store: str) -> None:
    """The serializer writes `created_at&.iso8601`: no fraction, unlike `timestamp.iso8601(3)`."""
    client = client_for(mock_app(lago_store, token=TOKEN))
    before = datetime.now(UTC)
    written = client.post(f"{LAGO}/events", json={"event": lago_event()}).json()["event"]
    [batched] = client.post(f"{LAGO}/events/batch", json={"events": [lago_event(2)]}).json()["events"]
    found = [client.get(f"{LAGO}/events/txn_{n}").json()["event"] for n in (1, 2)]
    after = datetime.now(UTC)

    answers = [*found] if lago_store == "clickhouse" else [written, batched, *found]
    for answer in answers:
        assert WHOLE_SECONDS.match(answer["created_at"]), answer["created_at"]
        assert _within(answer["created_at"], before, after)


def test_clickhouse_find_answers_the_raw_row() -> None:
    """On ClickHouse, `show` reads `events_raw`: `properties` is a `Map(String, String)` (numbers come back as
    their text), `precise_total_amount_cents` was written as "0.0" when none was sent
    (`app/services/events/kafka_producer_service.rb`), and `lago_id` is the row's made-up id
    `<organization>-<external_subscription_id>-<transaction_id>-<ingested_at as Unix seconds>`
    (`app/models/clickhouse/events_raw.rb`, `db/clickhouse_migrate/*events_raw*`)."""
    app = mock_app("clickhouse", token=TOKEN)
    client = httpx.Client(transport=sync_transport(app), base_url="http://mock", headers=AUTH)
    sent = {"gb": 12.5, "region": "eu", "seats": 3, "trial": True, "tags": ["a", "b"]}
    with client:
        client.post(f"{LAGO}/events", json={"event": lago_event(properties=sent)})
        client.post(f"{LAGO}/events", json={"event": lago_event(2, precise_total_amount_cents="12.50")})
        found = client.get(f"{LAGO}/events/txn_1").json()["event"]
        priced = client.get(f"{LAGO}/events/txn_2").json()["event"]

    assert found["properties"] == {
        "gb": "12.5",
        "region": "eu",
        "seats": "3",
        "trial": "true",
        "tags": '["a","b"]',
    }
    assert found["precise_total_amount_cents"] == "0.0"
    assert priced["precise_total_amount_cents"] == "12.5"
    organization, rest = found["lago_id"][:36], found["lago_id"][36:]
    uuid.UUID(organization)
    ingested = int(datetime.fromisoformat(found["created_at"]).timestamp())
    assert rest == f"-sub_acme_growth-txn_1-{ingested}"
    assert priced["lago_id"].startswith(organization + "-sub_acme_growth-txn_2-")
    # The events the mock keeps (and that usage reads) are unchanged.
    assert app.state.mock.lago.events()[0]["properties"] == sent


def test_postgres_find_answers_the_saved_event_as_sent() -> None:
    """On Postgres, `show` reads the `events` row: jsonb properties keep their types, a missing amount is null."""
    app = mock_app("postgres", token=TOKEN)
    sent = {"gb": 12.5, "seats": 3, "trial": True}
    with httpx.Client(transport=sync_transport(app), base_url="http://mock", headers=AUTH) as client:
        written = client.post(f"{LAGO}/events", json={"event": lago_event(properties=sent)}).json()["event"]
        found = client.get(f"{LAGO}/events/txn_1").json()["event"]

    assert found == written
    assert found["properties"] == sent
    assert found["precise_total_amount_cents"] is None
    uuid.UUID(found["lago_id"])


@pytest.mark.parametrize("lago_store", LAGO_STORES)
@pytest.mark.parametrize(
    ("sent", "answered"),
    [
        # lago-api reads the number's text as a BigDecimal (PR #5651), so a value whose nearest double lies
        # just below it (1714558530.12299990654...) keeps its milliseconds; `iso8601(3)` cuts the rest.
        pytest.param("1714558530.123", "2024-05-01T10:15:30.123Z", id="string-below"),
        pytest.param(1714558530.123, "2024-05-01T10:15:30.123Z", id="float-below"),
        pytest.param("1714558530.001", "2024-05-01T10:15:30.001Z", id="one-millisecond-below"),
        pytest.param("1714558530.998", "2024-05-01T10:15:30.998Z", id="string-below-again"),
        pytest.param("1714558530.9999", "2024-05-01T10:15:30.999Z", id="cut-not-rounded"),
        pytest.param("1714558530.127", "2024-05-01T10:15:30.127Z", id="string-above"),
        pytest.param("1714558530.250", "2024-05-01T10:15:30.250Z", id="exact-in-binary"),
        pytest.param(1714558530, "2024-05-01T10:15:30.000Z", id="integer"),
    ],
)
def test_a_fractional_timestamp_is_read_as_a_double_and_cut_to_milliseconds(
    client_for: ClientFor, lago_store: str, sent: object, answered: str
) -> None:
    """lago-api's create services read `Float(params[:timestamp])` into `Time.zone.at`
    (`app/services/events/create_service.rb`, `create_batch_service.rb`); Ruby's `Time.at(Float)` keeps the
    double's exact binary value, so a millisecond the double falls just below is answered one lower."""
    client = client_for(mock_app(lago_store, token=TOKEN))

    single = client.post(f"{LAGO}/events", json={"event": lago_event(timestamp=sent)}).json()["event"]
    batch = client.post(f"{LAGO}/events/batch", json={"events": [lago_event(2, timestamp=sent)]}).json()
    found = client.get(f"{LAGO}/events/txn_1").json()["event"]

    assert single["timestamp"] == batch["events"][0]["timestamp"] == answered
    assert found["timestamp"] == answered


@pytest.mark.parametrize("lago_store", LAGO_STORES)
def test_a_timestamp_that_is_no_number_is_the_only_error_named(
    client_for: ClientFor, lago_store: str
) -> None:
    """The create services read `Float(params[:timestamp])` before any model check, and rescue its
    ArgumentError as the event's one error (`app/services/events/create_service.rb`: the single event's
    `{"timestamp": ["invalid_format"]}`; `create_batch_service.rb`: that index's errors replaced by it)."""
    client = client_for(mock_app(lago_store, token=TOKEN))
    broken = lago_event(timestamp="yesterday", code="")
    del broken["transaction_id"]

    single = client.post(f"{LAGO}/events", json={"event": broken})
    batch = client.post(f"{LAGO}/events/batch", json={"events": [lago_event(), broken]})

    assert single.status_code == batch.status_code == 422
    assert single.json()["error_details"] == {"timestamp": ["invalid_format"]}
    assert batch.json()["error_details"] == {"1": {"timestamp": ["invalid_format"]}}


def test_a_duplicate_is_only_found_once_every_event_is_valid(client_for: ClientFor) -> None:
    """On Postgres the unique index is met only by the insert, which runs after validation: lago-api's batch
    service answers its validation errors and returns before `post_validate_events` saves anything
    (`app/services/events/create_batch_service.rb`), and a single event fails `save!`'s validation before
    its INSERT (`create_service.rb`). So a 422 never names a duplicate beside an invalid event."""
    client = client_for(mock_app("postgres", token=TOKEN))
    client.post(f"{LAGO}/events", json={"event": lago_event(9)})

    batch = client.post(f"{LAGO}/events/batch", json={"events": [lago_event(9), lago_event(1, code="")]})
    single = client.post(f"{LAGO}/events", json={"event": lago_event(9, code="")})
    stats = client.get("/_mock/stats").json()["lago"]

    assert batch.json()["error_details"] == {"1": {"code": ["value_is_mandatory"]}}
    assert single.json()["error_details"] == {"code": ["value_is_mandatory"]}
    assert stats["duplicates"] == 0
    # Once the invalid event is fixed or left out, the duplicate is named.
    again = client.post(f"{LAGO}/events/batch", json={"events": [lago_event(9), lago_event(1)]})
    assert again.json()["error_details"] == {"0": {"transaction_id": ["value_already_exist"]}}


@pytest.mark.parametrize("lago_store", LAGO_STORES)
def test_batch_items_that_are_not_objects_are_dropped_before_indexing(
    client_for: ClientFor, lago_store: str
) -> None:
    """`batch_params` permits `events: [...]` with a hash filter, and Rails keeps only the hash elements of
    such an array (ActionController::Parameters#each_element greps `Parameters`): a string, number, null or
    array in `events` vanishes, and the indexes of the 422 and the echo count the events that remain
    (lago-api `app/controllers/api/v1/events_controller.rb`)."""
    client = client_for(mock_app(lago_store, token=TOKEN))

    refused = client.post(
        f"{LAGO}/events/batch", json={"events": [lago_event(0), "x", 7, None, [1], lago_event(1, code="")]}
    )
    accepted = client.post(f"{LAGO}/events/batch", json={"events": ["x", lago_event(2), None, lago_event(3)]})
    nothing = client.post(f"{LAGO}/events/batch", json={"events": ["x", None]})

    assert refused.json()["error_details"] == {"1": {"code": ["value_is_mandatory"]}}
    assert accepted.status_code == 200
    assert [event["transaction_id"] for event in accepted.json()["events"]] == ["txn_2", "txn_3"]
    assert nothing.json()["error_details"] == {"events": ["no_events"]}
