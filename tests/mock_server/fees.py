"""Pay-in-advance fee estimates for Lago's `estimate_fees`, priced from the catalogue."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from mock_server.catalogue import BillableMetric, Catalogue, Subscription

_PLAIN_DECIMAL = re.compile(r"^\s*-?[0-9]+(\.[0-9]+)?\s*$")
# Enough digits for any integer the stdlib JSON parser accepts (4300 digits) times a price.
_PRECISION = 10_000


class EstimateRefused(Exception):
    """The event cannot be priced; carries Lago's status and either a 404 code or 422 field errors."""

    def __init__(
        self, status: int, code: str | None = None, details: dict[str, list[str]] | None = None
    ) -> None:
        super().__init__(code or details)
        self.status = status
        self.code = code
        self.details = details or {}


def as_number(value: object) -> Decimal | None:
    """A property value as a decimal, or None when it is not a plain finite number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str) and _PLAIN_DECIMAL.match(value):
        return Decimal(value.strip())
    return None


def decimal_text(value: Decimal) -> str:
    """Lago writes decimals as plain strings with at least one decimal place, e.g. `2.0`."""
    text = format(value, "f")
    return text if "." in text else f"{text}.0"


def _cents(amount: Decimal) -> int:
    return int((amount * 100).to_integral_value(rounding=ROUND_HALF_UP))


def _units(metric: BillableMetric, properties: object) -> Decimal:
    if metric.aggregation == "count":
        return Decimal(1)
    values = properties if isinstance(properties, dict) else {}
    if metric.field_name not in values:
        return Decimal(0)
    number = as_number(values[metric.field_name])
    if number is None:
        raise EstimateRefused(422, details={"properties": ["value_is_not_valid_number"]})
    return number


def _fee(
    subscription: Subscription, metric: BillableMetric, price: Decimal, units: Decimal
) -> dict[str, Any]:
    amount_cents = _cents(units * price)
    taxes_amount_cents = int(
        (Decimal(amount_cents) * Decimal(repr(subscription.taxes_rate)) / 100).to_integral_value(
            ROUND_HALF_UP
        )
    )
    return {
        "lago_id": None,
        "item": {"type": "charge", "code": metric.code, "name": metric.name},
        "pay_in_advance": True,
        "invoiceable": metric.invoiceable,
        "amount_cents": amount_cents,
        "amount_currency": subscription.currency,
        "taxes_amount_cents": taxes_amount_cents,
        "taxes_rate": subscription.taxes_rate,
        "total_amount_cents": amount_cents + taxes_amount_cents,
        "total_amount_currency": subscription.currency,
        "units": decimal_text(units),
        "precise_unit_amount": decimal_text(price),
        "total_aggregated_units": decimal_text(units),
        "events_count": 1,
        "payment_status": "pending",
        "external_subscription_id": subscription.external_id,
    }


def estimate(catalogue: Catalogue, event: dict[str, Any]) -> list[dict[str, Any]]:
    """The fees one event would create, or EstimateRefused with Lago's error."""
    subscription = catalogue.subscriptions.get(event["external_subscription_id"])
    if subscription is None:
        raise EstimateRefused(404, code="subscription_not_found")
    metric = catalogue.metrics.get(event["code"])
    if metric is None:
        raise EstimateRefused(404, code="billable_metric_not_found")
    price = metric.pay_in_advance_unit_price
    if price is None:
        raise EstimateRefused(422, details={"code": ["does_not_match_an_instant_charge"]})
    with localcontext() as context:
        context.prec = _PRECISION
        return [_fee(subscription, metric, price, _units(metric, event.get("properties")))]
