"""The subscriptions and billable metrics that `estimate_fees` prices events against."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal

from attrs import field, frozen
from attrs.validators import in_, instance_of, optional

Aggregation = Literal["count", "sum"]
ChargeModel = Literal["standard", "dynamic"]


def _to_price(value: object) -> Decimal | None:
    if value is None:
        return None
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"pay_in_advance_unit_price: {value!r} is not a decimal number") from None
    if not price.is_finite():
        raise ValueError(f"pay_in_advance_unit_price: {value!r} is not finite")
    return price


@frozen
class Subscription:
    external_id: str = field(validator=instance_of(str))
    currency: str = field(validator=instance_of(str))
    taxes_rate: float = field(default=0.0, converter=float)


@frozen
class BillableMetric:
    code: str = field(validator=instance_of(str))
    name: str = field(validator=instance_of(str))
    aggregation: Aggregation = field(validator=in_(("count", "sum")))
    # The event property a `sum` metric adds up.
    field_name: str | None = field(default=None, validator=optional(instance_of(str)))
    # None: the metric has no pay-in-advance charge, so it cannot be estimated.
    pay_in_advance_unit_price: Decimal | None = field(default=None, converter=_to_price)
    invoiceable: bool = field(default=True, validator=instance_of(bool))
    # "dynamic": the charge bills each event's precise_total_amount_cents instead of units times a price.
    charge_model: ChargeModel = field(default="standard", validator=in_(("standard", "dynamic")))

    def __attrs_post_init__(self) -> None:
        if self.aggregation == "sum" and not self.field_name:
            raise ValueError(f"billable metric {self.code}: a sum metric needs field_name")
        if self.charge_model == "dynamic" and self.pay_in_advance_unit_price is not None:
            raise ValueError(f"billable metric {self.code}: a dynamic charge has no unit price")

    @property
    def is_pay_in_advance(self) -> bool:
        """A dynamic charge is always priced in advance here; a standard one when it has a unit price."""
        return self.charge_model == "dynamic" or self.pay_in_advance_unit_price is not None


@frozen
class Catalogue:
    subscriptions: dict[str, Subscription]
    metrics: dict[str, BillableMetric]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Catalogue:
        subscriptions = [Subscription(**item) for item in data.get("subscriptions", [])]
        metrics = [BillableMetric(**item) for item in data.get("billable_metrics", [])]
        return cls(
            subscriptions={subscription.external_id: subscription for subscription in subscriptions},
            metrics={metric.code: metric for metric in metrics},
        )

    @classmethod
    def load(cls, path: Path) -> Catalogue:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a catalogue is a JSON object")
        return cls.from_dict(data)
