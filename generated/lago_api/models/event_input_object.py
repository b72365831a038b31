from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.event_properties import EventProperties


T = TypeVar("T", bound="EventInputObject")


@_attrs_define
class EventInputObject:
    """A usage event of one subscription."""

    transaction_id: str
    """ Idempotency key. A second event with the same `transaction_id` and
    `external_subscription_id` is refused with `value_already_exist`.
     """
    external_subscription_id: str
    """ Your identifier of the subscription the usage belongs to. """
    code: str
    """ Code of the billable metric. """
    timestamp: int | str | Unset = UNSET
    """ When the usage happened, in Unix seconds: an integer, or a numeric
    string with decimals for sub-second precision (`"1714558530.123"`).
    When absent, the time of reception is used.
     """
    precise_total_amount_cents: None | str | Unset = UNSET
    """ Amount for dynamic pricing, as a decimal string of cents, e.g. `"1234.56"`. """
    properties: EventProperties | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        from ..models.event_properties import EventProperties  # noqa: PLC0415

        transaction_id = self.transaction_id

        external_subscription_id = self.external_subscription_id

        code = self.code

        timestamp: int | str | Unset
        if isinstance(self.timestamp, Unset):
            timestamp = UNSET
        else:
            timestamp = self.timestamp

        precise_total_amount_cents: None | str | Unset
        if isinstance(self.precise_total_amount_cents, Unset):
            precise_total_amount_cents = UNSET
        else:
            precise_total_amount_cents = self.precise_total_amount_cents

        properties: dict[str, Any] | None | Unset
        if isinstance(self.properties, Unset):
            properties = UNSET
        elif isinstance(self.properties, EventProperties):
            properties = self.properties.to_dict()
        else:
            properties = self.properties

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "transaction_id": transaction_id,
                "external_subscription_id": external_subscription_id,
                "code": code,
            }
        )
        if timestamp is not UNSET:
            field_dict["timestamp"] = timestamp
        if precise_total_amount_cents is not UNSET:
            field_dict["precise_total_amount_cents"] = precise_total_amount_cents
        if properties is not UNSET:
            field_dict["properties"] = properties

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.event_properties import EventProperties  # noqa: PLC0415

        d = dict(src_dict)
        transaction_id = d.pop("transaction_id")

        external_subscription_id = d.pop("external_subscription_id")

        code = d.pop("code")

        def _parse_timestamp(data: object) -> int | str | Unset:
            if isinstance(data, Unset):
                return data
            return cast(int | str | Unset, data)

        timestamp = _parse_timestamp(d.pop("timestamp", UNSET))

        def _parse_precise_total_amount_cents(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        precise_total_amount_cents = _parse_precise_total_amount_cents(d.pop("precise_total_amount_cents", UNSET))

        def _parse_properties(data: object) -> EventProperties | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                properties_type_0 = EventProperties.from_dict(data)

                return properties_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(EventProperties | None | Unset, data)

        properties = _parse_properties(d.pop("properties", UNSET))

        event_input_object = cls(
            transaction_id=transaction_id,
            external_subscription_id=external_subscription_id,
            code=code,
            timestamp=timestamp,
            precise_total_amount_cents=precise_total_amount_cents,
            properties=properties,
        )

        return event_input_object
