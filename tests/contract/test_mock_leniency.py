"""The mock accepts what the real servers accept, and answers what they answer, beyond the narrow happy path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from billing_events.mock import MockConfig, create_app
from lago_api.models import ApiErrorUnprocessableEntity, FieldErrors

from .mock_support import LAGO, TOGAI, TOKEN, assert_matches, lago_event, togai_event

ClientFor = Callable[[Starlette], httpx.Client]
RESTRICTED = "read-only-key"


def stored(client: httpx.Client) -> list[dict[str, Any]]:
    events = client.get("/_mock/events/lago").json()
    assert isinstance(events, list)
    return events


@pytest.mark.parametrize(
    ("timestamp", "answered"),
    [
        pytest.param(1714558530.25, "2024-05-01T10:15:30.250Z", id="float"),
        pytest.param(1714558530.0, "2024-05-01T10:15:30.000Z", id="whole-float"),
        pytest.param(1714558530.1239, "2024-05-01T10:15:30.123Z", id="sub-millisecond"),
    ],
)
def test_a_json_number_with_decimals_is_a_timestamp(
    client: httpx.Client, timestamp: float, answered: str
) -> None:
    response = client.post(f"{LAGO}/events", json={"event": lago_event(timestamp=timestamp)})

    assert response.status_code == 200
    assert response.json()["event"]["timestamp"] == answered


def test_a_null_timestamp_is_the_time_of_reception(client: httpx.Client) -> None:
    response = client.post(f"{LAGO}/events", json={"event": lago_event(timestamp=None)})

    assert response.status_code == 200
    event = response.json()["event"]
    # created_at is the same moment in whole seconds (lago-api V1::EventSerializer: `iso8601`).
    assert event["created_at"] == event["timestamp"][:19] + "Z"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(True, id="bool"),
        pytest.param(None, id="null"),
        pytest.param({"zone": "eu", "tier": 2}, id="object"),
        pytest.param([1, "two"], id="array"),
    ],
)
def test_property_values_may_be_any_json_value(client: httpx.Client, value: object) -> None:
    response = client.post(f"{LAGO}/events", json={"event": lago_event(properties={"gb": 1, "extra": value})})

    assert response.status_code == 200
    assert response.json()["event"]["properties"] == {"gb": 1, "extra": value}
    assert_matches("lago", "EventResponse", response.json())


@pytest.mark.parametrize(
    ("sent", "answered"),
    [
        pytest.param(1234.56, "1234.56", id="float"),
        pytest.param(12, "12.0", id="integer"),
        pytest.param("99.5", "99.5", id="string"),
        pytest.param(None, None, id="null"),
        # The server casts any scalar to decimal(40, 15) and answers the cast value.
        pytest.param("1.50", "1.5", id="trailing-zero"),
        pytest.param("0.1234567890123456", "0.123456789012346", id="fifteen-places"),
        pytest.param("12,50", "12.0", id="leading-number"),
        pytest.param(" 1_000e1 ", "10000.0", id="ruby-loose-number"),
        pytest.param("abc", "0.0", id="no-number"),
        pytest.param(True, "0.0", id="boolean"),
    ],
)
def test_precise_total_amount_cents_is_cast_like_the_server_does(
    client: httpx.Client, sent: object, answered: str | None
) -> None:
    response = client.post(f"{LAGO}/events", json={"event": lago_event(precise_total_amount_cents=sent)})

    assert response.status_code == 200
    assert response.json()["event"]["precise_total_amount_cents"] == answered


def test_unknown_keys_are_dropped_not_refused(client: httpx.Client) -> None:
    single = client.post(f"{LAGO}/events", json={"event": lago_event(colour="red"), "extra": 1})
    batch = client.post(f"{LAGO}/events/batch", json={"events": [lago_event(2, colour="blue")], "extra": 1})
    estimate = client.post(
        f"{LAGO}/events/estimate_fees",
        json={"event": {"code": "api_calls", "external_subscription_id": "sub_acme_growth", "colour": "red"}},
    )

    assert [single.status_code, batch.status_code, estimate.status_code] == [200, 200, 200]
    assert "colour" not in single.json()["event"]
    assert all("colour" not in event for event in stored(client))
    assert len(stored(client)) == 2


def test_an_event_without_a_subscription_is_stored_every_time(client: httpx.Client) -> None:
    """The unique index is (organization, external_subscription_id, transaction_id), and NULLs never collide."""
    event = lago_event()
    del event["external_subscription_id"]

    first = client.post(f"{LAGO}/events", json={"event": event})
    again = client.post(f"{LAGO}/events", json={"event": event})

    assert (first.status_code, again.status_code) == (200, 200)
    assert first.json()["event"]["external_subscription_id"] is None
    assert len(stored(client)) == 2


@pytest.fixture
def restricted(client_for: ClientFor) -> tuple[httpx.Client, httpx.Client]:
    """A client with the full key and one with a key that may read but not write events, on one mock."""
    app = create_app(MockConfig(token=TOKEN, restricted_token=RESTRICTED))
    reader = client_for(app)
    reader.headers["Authorization"] = f"Bearer {RESTRICTED}"
    return client_for(app), reader


def test_a_restricted_key_may_not_write_events(restricted: tuple[httpx.Client, httpx.Client]) -> None:
    writer, reader = restricted
    writer.post(f"{LAGO}/events", json={"event": lago_event()})

    single = reader.post(f"{LAGO}/events", json={"event": lago_event(2)})
    batch = reader.post(f"{LAGO}/events/batch", json={"events": [lago_event(3)]})

    forbidden = {"status": 403, "error": "Forbidden", "code": "write_action_not_allowed_for_event"}
    assert (single.status_code, single.json()) == (403, forbidden)
    assert (batch.status_code, batch.json()) == (403, forbidden)
    assert_matches("lago", "ApiErrorForbidden", single.json())
    assert [event["transaction_id"] for event in stored(writer)] == ["txn_1"]
    # Reading is not a write; estimating is, as lago-api's Api::BaseController#authorize counts every method
    # but GET as a write (app/controllers/api/base_controller.rb, `mode`), estimate_fees' POST included.
    assert reader.get(f"{LAGO}/events/txn_1").status_code == 200
    estimate = {"code": "api_calls", "external_subscription_id": "sub_acme_growth"}
    estimated = reader.post(f"{LAGO}/events/estimate_fees", json={"event": estimate})
    assert (estimated.status_code, estimated.json()) == (403, forbidden)
    assert writer.post(f"{LAGO}/events/estimate_fees", json={"event": estimate}).status_code == 200
    # The key is Lago's: Togai does not know it.
    assert reader.post(f"{TOGAI}/ingest", json={"event": togai_event()}).status_code == 401


def test_a_restricted_key_must_differ_from_the_full_one() -> None:
    with pytest.raises(ValueError, match="restricted_token"):
        MockConfig(token=TOKEN, restricted_token=TOKEN)


def test_a_batch_without_events_is_no_events(client: httpx.Client) -> None:
    response = client.post(f"{LAGO}/events/batch", json={"event": lago_event()})

    assert response.status_code == 422
    assert response.json()["error_details"] == {"events": ["no_events"]}


def test_a_batch_error_can_map_an_index_to_a_message() -> None:
    body = {
        "status": 422,
        "error": "Unprocessable Entity",
        "code": "validation_errors",
        "error_details": {"0": "expression: undefined variable 'gb'", "1": {"timestamp": ["invalid_format"]}},
    }

    assert_matches("lago", "ApiErrorUnprocessableEntity", body)
    parsed = ApiErrorUnprocessableEntity.from_dict(body)
    assert not isinstance(parsed.error_details, str)
    details = parsed.error_details.additional_properties
    assert details["0"] == "expression: undefined variable 'gb'"
    assert isinstance(details["1"], FieldErrors)


def test_null_properties_are_stored_as_an_empty_object(client: httpx.Client) -> None:
    response = client.post(f"{LAGO}/events", json={"event": lago_event(properties=None)})

    assert response.status_code == 200
    assert response.json()["event"]["properties"] == {}
