"""estimate_fees with every key of an event: the official Python client's body, dynamic pricing, the overlay."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from billing_events import AsyncLago, Lago
from billing_events.mock.testing import async_transport, sync_transport

from .mock_support import LAGO, TOKEN, assert_matches

BASE_URL = f"http://mock{LAGO}"


def official_client_body(**event: Any) -> dict[str, Any]:
    """What lago-python-client sends: its Event model serialised whole, so all six keys, unset ones as null."""
    keys = ("transaction_id", "external_subscription_id", "code", "timestamp", "precise_total_amount_cents")
    body = {key: event.get(key) for key in keys}
    body["properties"] = event.get("properties")
    return {"event": body}


@pytest.mark.parametrize(
    ("event", "amount_cents"),
    [
        pytest.param(
            {"transaction_id": "estimate-1", "code": "seats", "properties": {"seats": 2}},
            2000,
            id="unset-as-null",
        ),
        pytest.param(
            {
                "transaction_id": "estimate-2",
                "code": "seats",
                "timestamp": 1714558530,
                "properties": {"seats": 3},
            },
            3000,
            id="integer-timestamp",
        ),
        pytest.param(
            {
                "transaction_id": "estimate-3",
                "code": "compute_cost",
                "timestamp": "1714558530.5",
                "precise_total_amount_cents": "1234.5",
                "properties": {"cpu_seconds": 60},
            },
            1235,
            id="dynamic-pricing",
        ),
    ],
)
def test_the_official_python_clients_estimate_body_is_accepted(
    client: httpx.Client, event: dict[str, Any], amount_cents: int
) -> None:
    body = official_client_body(external_subscription_id="sub_acme_growth", **event)
    assert len(body["event"]) == 6

    response = client.post(f"{LAGO}/events/estimate_fees", json=body)

    assert response.status_code == 200, response.text
    assert_matches("lago", "FeesResponse", response.json())
    [fee] = response.json()["fees"]
    assert fee["amount_cents"] == amount_cents
    assert client.get("/_mock/events/lago").json() == []


def test_a_dynamic_pricing_estimate_without_an_amount_is_zero(client: httpx.Client) -> None:
    event = {
        "code": "compute_cost",
        "external_subscription_id": "sub_acme_growth",
        "properties": {"cpu_seconds": 1},
    }

    response = client.post(f"{LAGO}/events/estimate_fees", json={"event": event})

    [fee] = response.json()["fees"]
    assert (fee["amount_cents"], fee["sub_total_excluding_taxes_precise_amount_cents"]) == (0, "0.0")


@pytest.mark.parametrize(("amount", "cents"), [("x", 0), ("12,50", 12), (True, 0)])
def test_a_dynamic_pricing_estimate_prices_the_amount_as_the_server_casts_it(
    client: httpx.Client, amount: object, cents: int
) -> None:
    """The estimate builds an event, whose decimal column reads a non-numeric amount loosely: no 422."""
    event = {
        "code": "compute_cost",
        "external_subscription_id": "sub_acme_growth",
        "precise_total_amount_cents": amount,
    }

    response = client.post(f"{LAGO}/events/estimate_fees", json={"event": event})

    assert response.status_code == 200
    [fee] = response.json()["fees"]
    assert fee["amount_cents"] == cents


def test_the_overlay_estimates_a_dynamic_pricing_charge(mock_app: Starlette) -> None:
    with Lago(TOKEN, base_url=BASE_URL, transport=sync_transport(mock_app)) as lago:
        [priced] = lago.estimate_fees(
            "compute_cost",
            "sub_globex_starter",
            {"cpu_seconds": 10},
            precise_total_amount_cents=2500,
            timestamp=1714558530.25,
            transaction_id="estimate-9",
        )
        [unpriced] = lago.estimate_fees("compute_cost", "sub_globex_starter", {"cpu_seconds": 10})

    assert (priced.amount_cents, priced.taxes_amount_cents, priced.total_amount_cents) == (2500, 500, 3000)
    assert priced.item.lago_item_id and priced.item.item_type == "BillableMetric"
    assert unpriced.amount_cents == 0


def test_the_async_overlay_estimates_a_dynamic_pricing_charge(mock_app: Starlette) -> None:
    async def estimate() -> int:
        async with AsyncLago(TOKEN, base_url=BASE_URL, transport=async_transport(mock_app)) as lago:
            [fee] = await lago.estimate_fees(
                "compute_cost", "sub_acme_growth", None, precise_total_amount_cents="99.5"
            )
            return fee.amount_cents

    assert asyncio.run(estimate()) == 100


def test_a_non_numeric_property_is_refused_before_the_missing_instant_charge(client: httpx.Client) -> None:
    """lago-api's ValidateCreationService checks the property before the estimate looks for charges."""
    event = {
        "code": "storage_gb",
        "external_subscription_id": "sub_acme_growth",
        "properties": {"gb": "lots"},
    }

    response = client.post(f"{LAGO}/events/estimate_fees", json={"event": event})

    assert response.status_code == 422
    assert response.json()["error_details"] == {"properties": ["value_is_not_valid_number"]}


NOT_FOUND_SUBSCRIPTION = {"status": 404, "error": "Not Found", "code": "subscription_not_found"}
NOT_FOUND_METRIC = {"status": 404, "error": "Not Found", "code": "billable_metric_not_found"}


@pytest.mark.parametrize(
    ("event", "status", "body"),
    [
        pytest.param({"code": "seats"}, 404, NOT_FOUND_SUBSCRIPTION, id="no-subscription"),
        pytest.param(
            {"code": "seats", "external_subscription_id": ""},
            404,
            NOT_FOUND_SUBSCRIPTION,
            id="empty-subscription",
        ),
        pytest.param(
            {"code": "seats", "external_subscription_id": None},
            404,
            NOT_FOUND_SUBSCRIPTION,
            id="null-subscription",
        ),
        pytest.param(
            {"code": "seats", "external_subscription_id": "sub_nobody", "timestamp": "yesterday"},
            404,
            NOT_FOUND_SUBSCRIPTION,
            id="subscription-before-timestamp",
        ),
        pytest.param({"external_subscription_id": "sub_acme_growth"}, 404, NOT_FOUND_METRIC, id="no-code"),
        pytest.param(
            {"code": "", "external_subscription_id": "sub_acme_growth"},
            404,
            NOT_FOUND_METRIC,
            id="empty-code",
        ),
        pytest.param(
            {"external_subscription_id": "sub_acme_growth", "timestamp": "yesterday"},
            422,
            {
                "status": 422,
                "error": "Unprocessable Entity",
                "code": "validation_errors",
                "error_details": {"timestamp": ["invalid_format"]},
            },
            id="timestamp-before-code",
        ),
    ],
)
def test_a_missing_subscription_or_code_is_not_found_in_the_servers_order(
    client: httpx.Client, event: dict[str, Any], status: int, body: object
) -> None:
    """lago-api's `Fees::EstimatePayInAdvanceService` runs `Events::ValidateCreationService`
    (`app/services/events/validate_creation_service.rb`): a blank or unknown subscription is a 404 first,
    then a timestamp that is not a number a 422, then a blank or unknown metric code a 404. No field is
    refused as missing."""
    response = client.post(f"{LAGO}/events/estimate_fees", json={"event": event})

    assert (response.status_code, response.json()) == (status, body)
