"""The mock's Lago behaviour: storage by (subscription, transaction), all-or-nothing batches, timestamps, fees."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from billing_events.mock import MockConfig, MockState, create_app
from billing_events.mock.testing import serve_in_thread, sync_transport
from lago_api import AuthenticatedClient
from lago_api.api.events import find_event
from lago_api.models import ApiErrorNotFound, EventResponse

from .mock_support import AUTH, LAGO, TOKEN, assert_matches, lago_event

BAD_REQUEST_EVENT = {
    "status": 400,
    "error": "BadRequest: param is missing or the value is empty or invalid: event",
}


def unprocessable(details: object) -> dict[str, Any]:
    return {
        "status": 422,
        "error": "Unprocessable Entity",
        "code": "validation_errors",
        "error_details": details,
    }


def stored(client: httpx.Client) -> list[dict[str, Any]]:
    events = client.get("/_mock/events/lago").json()
    assert isinstance(events, list)
    return events


def test_a_created_event_is_answered_and_stored_as_an_event_object(client: httpx.Client) -> None:
    event = lago_event(precise_total_amount_cents="1234.56", properties={"gb": 12.5, "region": "eu"})

    response = client.post(f"{LAGO}/events", json={"event": event})

    assert response.status_code == 200
    body = response.json()
    assert_matches("lago", "EventResponse", body)
    answered = body["event"]
    assert answered == {
        "lago_id": answered["lago_id"],
        "transaction_id": "txn_1",
        "lago_customer_id": None,
        "code": "storage_gb",
        "timestamp": "2024-05-01T10:15:30.000Z",
        "lago_subscription_id": None,
        "external_subscription_id": "sub_acme_growth",
        "precise_total_amount_cents": "1234.56",
        "properties": {"gb": 12.5, "region": "eu"},
        "created_at": answered["created_at"],
    }
    uuid.UUID(answered["lago_id"])
    assert stored(client) == [answered]


def test_each_event_gets_a_fresh_lago_id(client: httpx.Client) -> None:
    first = client.post(f"{LAGO}/events", json={"event": lago_event(1)}).json()["event"]
    second = client.post(f"{LAGO}/events", json={"event": lago_event(2)}).json()["event"]

    assert first["lago_id"] != second["lago_id"]


@pytest.mark.parametrize(
    ("sent", "answered"),
    [
        pytest.param(1651240791, "2022-04-29T13:59:51.000Z", id="integer"),
        pytest.param("1651240791", "2022-04-29T13:59:51.000Z", id="numeric-string"),
        pytest.param("1651240791.127", "2022-04-29T13:59:51.127Z", id="milliseconds"),
        # Read as a decimal, not as the double nearest it (which lies just below .123).
        pytest.param("1651240791.123", "2022-04-29T13:59:51.123Z", id="milliseconds-below-in-binary"),
        pytest.param("1651240791.1239", "2022-04-29T13:59:51.123Z", id="sub-millisecond-truncated"),
        pytest.param(0, "1970-01-01T00:00:00.000Z", id="epoch"),
    ],
)
def test_unix_timestamps_are_answered_as_iso_with_milliseconds(
    client: httpx.Client, sent: object, answered: str
) -> None:
    response = client.post(f"{LAGO}/events", json={"event": lago_event(timestamp=sent)})

    assert response.status_code == 200
    assert response.json()["event"]["timestamp"] == answered


def test_a_missing_timestamp_means_the_time_of_reception(client: httpx.Client) -> None:
    event = lago_event()
    del event["timestamp"]
    before = datetime.now(UTC).replace(microsecond=0)

    answered = client.post(f"{LAGO}/events", json={"event": event}).json()["event"]

    moment = datetime.fromisoformat(answered["timestamp"])
    assert before <= moment <= datetime.now(UTC)
    # created_at is the same moment in whole seconds (lago-api V1::EventSerializer: `iso8601`).
    assert answered["created_at"] == answered["timestamp"][:19] + "Z"


@pytest.mark.parametrize(
    "timestamp",
    [
        pytest.param("2022-04-29T08:59:51Z", id="iso-string"),
        pytest.param("yesterday", id="word"),
        pytest.param(-5, id="negative"),
        pytest.param(-0.5, id="negative-fraction"),
        pytest.param(10**20, id="beyond-year-9999"),
    ],
)
def test_anything_but_unix_seconds_is_an_invalid_format(client: httpx.Client, timestamp: object) -> None:
    response = client.post(f"{LAGO}/events", json={"event": lago_event(timestamp=timestamp)})

    assert response.status_code == 422
    assert response.json() == unprocessable({"timestamp": ["invalid_format"]})
    assert stored(client) == []


def test_a_repeated_transaction_is_refused_for_the_same_subscription_only(client: httpx.Client) -> None:
    first = client.post(f"{LAGO}/events", json={"event": lago_event()})
    again = client.post(f"{LAGO}/events", json={"event": lago_event(properties={"gb": 1})})
    other_subscription = client.post(
        f"{LAGO}/events", json={"event": lago_event(external_subscription_id="sub_globex_starter")}
    )

    assert first.status_code == 200
    assert again.status_code == 422
    assert again.json() == unprocessable({"transaction_id": ["value_already_exist"]})
    assert other_subscription.status_code == 200
    assert len(stored(client)) == 2
    assert client.get("/_mock/stats").json()["lago"] == {
        "stored": 2,
        "duplicates": 1,
        "requests": 3,
        "arrivals": 2,
        "store": "postgres",
    }


@pytest.mark.parametrize(
    ("change", "details"),
    [
        pytest.param({"transaction_id": None}, {"transaction_id": ["value_is_mandatory"]}, id="missing"),
        pytest.param({"transaction_id": ""}, {"transaction_id": ["value_is_mandatory"]}, id="blank"),
        pytest.param({"code": 5}, {"code": ["value_is_invalid"]}, id="wrong-type"),
        pytest.param(
            {"precise_total_amount_cents": "1e30"},
            {"precise_total_amount_cents": ["value_is_invalid"]},
            id="amount-overflows-the-column",
        ),
        pytest.param({"properties": [1]}, {"properties": ["value_is_invalid"]}, id="not-an-object"),
        pytest.param(
            {"external_subscription_id": 5},
            {"external_subscription_id": ["value_is_invalid"]},
            id="subscription-type",
        ),
    ],
)
def test_schema_violations_map_to_lago_codes(
    client: httpx.Client, change: dict[str, Any], details: dict[str, Any]
) -> None:
    event = lago_event(**change)
    for name, value in change.items():
        if value is None:
            del event[name]

    response = client.post(f"{LAGO}/events", json={"event": event})

    assert response.status_code == 422
    assert response.json() == unprocessable(details)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="missing"),
        pytest.param({"event": None}, id="null"),
        pytest.param({"event": {}}, id="empty"),
        pytest.param({"event": "txn_1"}, id="string"),
        pytest.param([lago_event()], id="not-an-object"),
    ],
)
def test_a_missing_or_empty_event_is_a_400(client: httpx.Client, body: object) -> None:
    for path in ("/events", "/events/estimate_fees"):
        response = client.post(f"{LAGO}{path}", json=body)

        assert response.status_code == 400
        assert response.json() == BAD_REQUEST_EVENT


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="missing"),
        pytest.param({"events": None}, id="null"),
        pytest.param({"events": {"0": lago_event()}}, id="object"),
    ],
)
def test_a_missing_events_list_is_no_events(client: httpx.Client, body: object) -> None:
    response = client.post(f"{LAGO}/events/batch", json=body)

    assert response.status_code == 422
    assert response.json() == unprocessable({"events": ["no_events"]})


def test_a_batch_body_that_is_not_an_object_is_no_events(client: httpx.Client) -> None:
    """Rails files a JSON body that is not an object under `_json`: the batch finds no `events` in it."""
    response = client.post(f"{LAGO}/events/batch", json="events")

    assert response.status_code == 422
    assert response.json() == unprocessable({"events": ["no_events"]})


def test_a_valid_batch_is_stored_and_answered_in_order(client: httpx.Client) -> None:
    events = [lago_event(n) for n in range(3)]

    response = client.post(f"{LAGO}/events/batch", json={"events": events})

    assert response.status_code == 200
    assert_matches("lago", "EventsResponse", response.json())
    answered = response.json()["events"]
    assert [event["transaction_id"] for event in answered] == ["txn_0", "txn_1", "txn_2"]
    assert stored(client) == answered


def test_one_bad_event_rejects_the_whole_batch_and_names_every_bad_index(client: httpx.Client) -> None:
    events = [lago_event(0), lago_event(1, timestamp="soon"), lago_event(2), lago_event(3, code="")]

    response = client.post(f"{LAGO}/events/batch", json={"events": events})

    assert response.status_code == 422
    assert response.json() == unprocessable(
        {"1": {"timestamp": ["invalid_format"]}, "3": {"code": ["value_is_mandatory"]}}
    )
    assert stored(client) == []


def test_duplicates_inside_a_batch_and_against_the_store_reject_the_batch(client: httpx.Client) -> None:
    client.post(f"{LAGO}/events", json={"event": lago_event(9)})

    response = client.post(
        f"{LAGO}/events/batch", json={"events": [lago_event(1), lago_event(9), lago_event(2), lago_event(1)]}
    )

    assert response.status_code == 422
    assert response.json() == unprocessable(
        {"1": {"transaction_id": ["value_already_exist"]}, "3": {"transaction_id": ["value_already_exist"]}}
    )
    assert [event["transaction_id"] for event in stored(client)] == ["txn_9"]


def test_the_rest_of_a_refused_batch_goes_through_when_resent_without_the_duplicates(
    client: httpx.Client,
) -> None:
    client.post(f"{LAGO}/events", json={"event": lago_event(2)})
    batch = [lago_event(n) for n in range(4)]
    refused = client.post(f"{LAGO}/events/batch", json={"events": batch})
    duplicate_indexes = {int(index) for index in refused.json()["error_details"]}

    resent = client.post(
        f"{LAGO}/events/batch",
        json={"events": [event for index, event in enumerate(batch) if index not in duplicate_indexes]},
    )

    assert duplicate_indexes == {2}
    assert resent.status_code == 200
    assert sorted(event["transaction_id"] for event in stored(client)) == ["txn_0", "txn_1", "txn_2", "txn_3"]


def test_batch_size_limits(client: httpx.Client, mock_state: MockState) -> None:
    limit = mock_state.rules.lago.max_batch_events
    assert limit == 100

    too_many = client.post(f"{LAGO}/events/batch", json={"events": [lago_event(n) for n in range(limit + 1)]})
    empty = client.post(f"{LAGO}/events/batch", json={"events": []})
    at_limit = client.post(f"{LAGO}/events/batch", json={"events": [lago_event(n) for n in range(limit)]})

    assert too_many.json() == unprocessable({"events": ["too_many_events"]})
    assert empty.json() == unprocessable({"events": ["no_events"]})
    assert at_limit.status_code == 200


def test_find_answers_the_first_event_stored_with_that_transaction_id(client: httpx.Client) -> None:
    first = client.post(f"{LAGO}/events", json={"event": lago_event(5)}).json()["event"]
    client.post(f"{LAGO}/events", json={"event": lago_event(5, external_subscription_id="sub_other")})

    response = client.get(f"{LAGO}/events/txn_5")

    assert response.status_code == 200
    assert response.json() == {"event": first}


def test_find_of_an_unknown_transaction_is_a_404(client: httpx.Client) -> None:
    response = client.get(f"{LAGO}/events/nothing-here")

    assert response.status_code == 404
    assert response.json() == {"status": 404, "error": "Not Found", "code": "event_not_found"}


TRICKY_IDS = ["order/2024/05", "with space", "ünïcødé-€", "a%2Fb", "semi;colon?x=1#frag", "..."]


@pytest.mark.parametrize("transaction_id", TRICKY_IDS)
def test_find_decodes_an_url_encoded_transaction_id(mock_app: Starlette, transaction_id: str) -> None:
    client = AuthenticatedClient(
        base_url=f"http://mock{LAGO}", token=TOKEN, httpx_args={"transport": sync_transport(mock_app)}
    )
    with client:
        created = client.get_httpx_client().post(
            "/events", json={"event": lago_event(transaction_id=transaction_id)}
        )
        found = find_event.sync_detailed(transaction_id, client=client)
        missing = find_event.sync_detailed(f"{transaction_id}/", client=client)

    assert created.status_code == 200
    assert found.status_code == 200
    assert isinstance(found.parsed, EventResponse)
    assert found.parsed.event.transaction_id == transaction_id
    assert isinstance(missing.parsed, ApiErrorNotFound)


def test_find_decodes_an_encoded_slash_over_real_http(mock_app: Starlette) -> None:
    with (
        serve_in_thread(mock_app) as origin,
        httpx.Client(base_url=f"{origin}{LAGO}", headers=AUTH) as client,
    ):
        client.post("/events", json={"event": lago_event(transaction_id="a/b c/ü")})

        response = client.get("/events/a%2Fb%20c%2F%C3%BC")

    assert response.status_code == 200
    assert response.json()["event"]["transaction_id"] == "a/b c/ü"


def estimate(client: httpx.Client, **event: Any) -> httpx.Response:
    return client.post(f"{LAGO}/events/estimate_fees", json={"event": event})


def test_estimate_fees_prices_a_sum_metric_like_the_spec_example(client: httpx.Client) -> None:
    response = estimate(
        client, code="seats", external_subscription_id="sub_acme_growth", properties={"seats": 2}
    )

    assert response.status_code == 200
    assert_matches("lago", "FeesResponse", response.json())
    [fee] = response.json()["fees"]
    assert fee["item"] == {
        "type": "charge",
        "code": "seats",
        "name": "Seats",
        "lago_item_id": fee["item"]["lago_item_id"],
        "item_type": "BillableMetric",
    }
    assert fee["sub_total_excluding_taxes_amount_cents"] == 2000
    assert fee["sub_total_excluding_taxes_precise_amount_cents"] == "2000.0"
    assert (fee["units"], fee["precise_unit_amount"], fee["amount_cents"]) == ("2.0", "10.0", 2000)
    assert (fee["amount_currency"], fee["total_amount_cents"], fee["pay_in_advance"]) == ("USD", 2000, True)
    assert stored(client) == []


def test_estimate_fees_counts_and_adds_taxes(client: httpx.Client) -> None:
    response = estimate(client, code="api_calls", external_subscription_id="sub_globex_starter")

    [fee] = response.json()["fees"]
    assert (fee["units"], fee["amount_cents"], fee["taxes_amount_cents"], fee["total_amount_cents"]) == (
        "1.0",
        25,
        5,
        30,
    )
    assert fee["amount_currency"] == "EUR"


def test_estimate_fees_accepts_a_numeric_string(client: httpx.Client) -> None:
    response = estimate(
        client, code="seats", external_subscription_id="sub_acme_growth", properties={"seats": "1.5"}
    )

    assert response.json()["fees"][0]["amount_cents"] == 1500


@pytest.mark.parametrize(
    ("event", "status", "body"),
    [
        pytest.param(
            {"code": "seats", "external_subscription_id": "sub_nobody"},
            404,
            {"status": 404, "error": "Not Found", "code": "subscription_not_found"},
            id="unknown-subscription",
        ),
        pytest.param(
            {"code": "no_such_metric", "external_subscription_id": "sub_acme_growth"},
            404,
            {"status": 404, "error": "Not Found", "code": "billable_metric_not_found"},
            id="unknown-metric",
        ),
        pytest.param(
            {"code": "storage_gb", "external_subscription_id": "sub_acme_growth"},
            422,
            unprocessable({"code": ["does_not_match_an_instant_charge"]}),
            id="no-instant-charge",
        ),
        pytest.param(
            {"code": "seats", "external_subscription_id": "sub_acme_growth", "properties": {"seats": "two"}},
            422,
            unprocessable({"properties": ["value_is_not_valid_number"]}),
            id="not-a-number",
        ),
        pytest.param(
            {"code": "seats"},
            404,
            {"status": 404, "error": "Not Found", "code": "subscription_not_found"},
            id="missing-subscription",
        ),
    ],
)
def test_estimate_fees_errors(client: httpx.Client, event: dict[str, Any], status: int, body: object) -> None:
    response = estimate(client, **event)

    assert response.status_code == status
    assert response.json() == body


def test_estimate_fees_reads_the_configured_catalogue(
    tmp_path: Path, client_for: Callable[[Starlette], httpx.Client]
) -> None:
    catalogue = tmp_path / "catalogue.json"
    catalogue.write_text(
        json.dumps(
            {
                "subscriptions": [{"external_id": "sub_x", "currency": "JPY"}],
                "billable_metrics": [
                    {
                        "code": "tokens",
                        "name": "Tokens",
                        "aggregation": "sum",
                        "field_name": "n",
                        "pay_in_advance_unit_price": "0.5",
                    }
                ],
            }
        )
    )
    client = client_for(create_app(MockConfig(token=TOKEN, catalogue_path=catalogue)))

    response = estimate(client, code="tokens", external_subscription_id="sub_x", properties={"n": 7})

    [fee] = response.json()["fees"]
    assert (fee["amount_cents"], fee["amount_currency"], fee["units"]) == (350, "JPY", "7.0")
