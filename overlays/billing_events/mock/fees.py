"""Pay-in-advance fee estimates for Lago's `estimate_fees`, priced from the catalogue."""

from __future__ import annotations

import re
import uuid
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from billing_events.mock.catalogue import BillableMetric, Catalogue, Subscription
from billing_events.mock.lago_events import precise_decimal

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


# Item ids are stable per metric code, as the server's are per billable metric.
_ITEM_NAMESPACE = uuid.UUID("6f1c0f5e-3a57-4c38-9d7e-2f1b8a0c4d11")


def _dynamic_amount(event: dict[str, Any]) -> Decimal:
    """The cents a dynamic-pricing charge bills: the event's `precise_total_amount_cents` cast as the server
    casts it (a non-numeric value is 0, never refused), or 0 without it."""
    amount = precise_decimal(event.get("precise_total_amount_cents"))
    return amount if amount is not None and amount.is_finite() else Decimal(0)


def _fee(
    subscription: Subscription,
    metric: BillableMetric,
    price: Decimal,
    units: Decimal,
    precise_cents: Decimal | None = None,
) -> dict[str, Any]:
    """One estimated fee: `units * price`, or for a dynamic-pricing charge the given `precise_cents`."""
    if precise_cents is None:
        precise_cents = units * price * 100
    else:
        price = precise_cents / 100 / units if units else Decimal(0)
    amount_cents = int(precise_cents.to_integral_value(rounding=ROUND_HALF_UP))
    taxes_amount_cents = int(
        (Decimal(amount_cents) * Decimal(repr(subscription.taxes_rate)) / 100).to_integral_value(
            ROUND_HALF_UP
        )
    )
    return {
        "lago_id": None,
        "item": {
            "type": "charge",
            "code": metric.code,
            "name": metric.name,
            "lago_item_id": str(uuid.uuid5(_ITEM_NAMESPACE, metric.code)),
            "item_type": "BillableMetric",
        },
        "pay_in_advance": True,
        "invoiceable": metric.invoiceable,
        "amount_cents": amount_cents,
        "amount_currency": subscription.currency,
        "sub_total_excluding_taxes_amount_cents": amount_cents,
        "sub_total_excluding_taxes_precise_amount_cents": decimal_text(precise_cents),
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
    metric = catalogue.metrics.get(event.get("code") or "")
    if metric is None:
        raise EstimateRefused(404, code="billable_metric_not_found")
    with localcontext() as context:
        context.prec = _PRECISION
        # The server validates the event (its aggregated property) before it looks for an instant charge.
        units = _units(metric, event.get("properties"))
        if not metric.is_pay_in_advance:
            raise EstimateRefused(422, details={"code": ["does_not_match_an_instant_charge"]})
        if metric.charge_model == "dynamic":
            return [_fee(subscription, metric, Decimal(0), units, _dynamic_amount(event))]
        price = metric.pay_in_advance_unit_price
        assert price is not None, "a standard pay-in-advance charge has a price"
        return [_fee(subscription, metric, price, units)]
