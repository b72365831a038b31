from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.fee_object_payment_status import FeeObjectPaymentStatus, check_fee_object_payment_status
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.fee_item import FeeItem


T = TypeVar("T", bound="FeeObject")


@_attrs_define
class FeeObject:
    """An estimated fee. This spec requires the subset of Lago's fee fields
    that an estimate always carries; the rest are optional.

    """

    item: FeeItem
    """ What the fee charges for. """
    pay_in_advance: bool
    invoiceable: bool
    amount_cents: int
    amount_currency: str
    """ ISO 4217 currency code. """
    sub_total_excluding_taxes_amount_cents: int
    """ The amount before taxes, in cents. """
    sub_total_excluding_taxes_precise_amount_cents: str
    """ The amount before taxes, in cents, as a decimal string. """
    taxes_amount_cents: int
    total_amount_cents: int
    total_amount_currency: str
    units: str
    """ Units charged, as a decimal string. """
    events_count: int
    lago_id: None | str | Unset = UNSET
    """ Null for an estimate, which is not stored. """
    taxes_rate: float | Unset = UNSET
    precise_unit_amount: str | Unset = UNSET
    """ Price of one unit, as a decimal string. """
    total_aggregated_units: str | Unset = UNSET
    payment_status: FeeObjectPaymentStatus | Unset = UNSET
    external_subscription_id: str | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        item = self.item.to_dict()

        pay_in_advance = self.pay_in_advance

        invoiceable = self.invoiceable

        amount_cents = self.amount_cents

        amount_currency = self.amount_currency

        sub_total_excluding_taxes_amount_cents = self.sub_total_excluding_taxes_amount_cents

        sub_total_excluding_taxes_precise_amount_cents = self.sub_total_excluding_taxes_precise_amount_cents

        taxes_amount_cents = self.taxes_amount_cents

        total_amount_cents = self.total_amount_cents

        total_amount_currency = self.total_amount_currency

        units = self.units

        events_count = self.events_count

        lago_id: None | str | Unset
        if isinstance(self.lago_id, Unset):
            lago_id = UNSET
        else:
            lago_id = self.lago_id

        taxes_rate = self.taxes_rate

        precise_unit_amount = self.precise_unit_amount

        total_aggregated_units = self.total_aggregated_units

        payment_status: str | Unset = UNSET
        if not isinstance(self.payment_status, Unset):
            payment_status = self.payment_status

        external_subscription_id = self.external_subscription_id

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "item": item,
                "pay_in_advance": pay_in_advance,
                "invoiceable": invoiceable,
                "amount_cents": amount_cents,
                "amount_currency": amount_currency,
                "sub_total_excluding_taxes_amount_cents": sub_total_excluding_taxes_amount_cents,
                "sub_total_excluding_taxes_precise_amount_cents": sub_total_excluding_taxes_precise_amount_cents,
                "taxes_amount_cents": taxes_amount_cents,
                "total_amount_cents": total_amount_cents,
                "total_amount_currency": total_amount_currency,
                "units": units,
                "events_count": events_count,
            }
        )
        if lago_id is not UNSET:
            field_dict["lago_id"] = lago_id
        if taxes_rate is not UNSET:
            field_dict["taxes_rate"] = taxes_rate
        if precise_unit_amount is not UNSET:
            field_dict["precise_unit_amount"] = precise_unit_amount
        if total_aggregated_units is not UNSET:
            field_dict["total_aggregated_units"] = total_aggregated_units
        if payment_status is not UNSET:
            field_dict["payment_status"] = payment_status
        if external_subscription_id is not UNSET:
            field_dict["external_subscription_id"] = external_subscription_id

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.fee_item import FeeItem  # noqa: PLC0415

        d = dict(src_dict)
        item = FeeItem.from_dict(d.pop("item"))

        pay_in_advance = d.pop("pay_in_advance")

        invoiceable = d.pop("invoiceable")

        amount_cents = d.pop("amount_cents")

        amount_currency = d.pop("amount_currency")

        sub_total_excluding_taxes_amount_cents = d.pop("sub_total_excluding_taxes_amount_cents")

        sub_total_excluding_taxes_precise_amount_cents = d.pop("sub_total_excluding_taxes_precise_amount_cents")

        taxes_amount_cents = d.pop("taxes_amount_cents")

        total_amount_cents = d.pop("total_amount_cents")

        total_amount_currency = d.pop("total_amount_currency")

        units = d.pop("units")

        events_count = d.pop("events_count")

        def _parse_lago_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        lago_id = _parse_lago_id(d.pop("lago_id", UNSET))

        taxes_rate = d.pop("taxes_rate", UNSET)

        precise_unit_amount = d.pop("precise_unit_amount", UNSET)

        total_aggregated_units = d.pop("total_aggregated_units", UNSET)

        _payment_status = d.pop("payment_status", UNSET)
        payment_status: FeeObjectPaymentStatus | Unset
        if isinstance(_payment_status, Unset):
            payment_status = UNSET
        else:
            payment_status = check_fee_object_payment_status(_payment_status)

        external_subscription_id = d.pop("external_subscription_id", UNSET)

        fee_object = cls(
            item=item,
            pay_in_advance=pay_in_advance,
            invoiceable=invoiceable,
            amount_cents=amount_cents,
            amount_currency=amount_currency,
            sub_total_excluding_taxes_amount_cents=sub_total_excluding_taxes_amount_cents,
            sub_total_excluding_taxes_precise_amount_cents=sub_total_excluding_taxes_precise_amount_cents,
            taxes_amount_cents=taxes_amount_cents,
            total_amount_cents=total_amount_cents,
            total_amount_currency=total_amount_currency,
            units=units,
            events_count=events_count,
            lago_id=lago_id,
            taxes_rate=taxes_rate,
            precise_unit_amount=precise_unit_amount,
            total_aggregated_units=total_aggregated_units,
            payment_status=payment_status,
            external_subscription_id=external_subscription_id,
        )

        fee_object.additional_properties = d
        return fee_object

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
