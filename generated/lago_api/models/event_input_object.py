from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.event_properties import EventProperties


T = TypeVar("T", bound="EventInputObject")


@_attrs_define
class EventInputObject:
    """A usage event of one subscription. The server drops keys it does not
    know without an error, and stores an event without
    `external_subscription_id` that it can never bill.

    """

    transaction_id: str
    """ Idempotency key. A second event with the same `transaction_id` and
    `external_subscription_id` is refused with `value_already_exist`.
    The server refuses a blank one, empty or whitespace only (Rails'
    `presence` check), as `value_is_mandatory`.
     """
    code: str
    """ Code of the billable metric. The server refuses a blank one, empty
    or whitespace only (Rails' `presence` check), as `value_is_mandatory`.
     """
    external_subscription_id: None | str | Unset = UNSET
    """ Your identifier of the subscription the usage belongs to. The server
    stores an empty or null one as it stores a missing one: an event it
    can never bill.
     """
    timestamp: float | int | None | str | Unset = UNSET
    """ The event's time, or null (or absent) for the time the server received the request. """
    precise_total_amount_cents: bool | float | None | str | Unset = UNSET
    """ Amount for dynamic pricing in cents, as a number or a decimal string,
    e.g. `"1234.56"`. The server takes any scalar and casts it to a
    decimal with 15 places: a string is read up to its first character
    that is not part of a number (`"12,50"` is 12), and a string with no
    number in front, or a boolean, is 0. It answers the cast value.
     """
    properties: EventProperties | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.event_properties import EventProperties  # noqa: PLC0415

        transaction_id = self.transaction_id

        code = self.code

        external_subscription_id: None | str | Unset
        if isinstance(self.external_subscription_id, Unset):
            external_subscription_id = UNSET
        else:
            external_subscription_id = self.external_subscription_id

        timestamp: float | int | None | str | Unset
        if isinstance(self.timestamp, Unset):
            timestamp = UNSET
        else:
            timestamp = self.timestamp

        precise_total_amount_cents: bool | float | None | str | Unset
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
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "transaction_id": transaction_id,
                "code": code,
            }
        )
        if external_subscription_id is not UNSET:
            field_dict["external_subscription_id"] = external_subscription_id
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

        code = d.pop("code")

        def _parse_external_subscription_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        external_subscription_id = _parse_external_subscription_id(d.pop("external_subscription_id", UNSET))

        def _parse_timestamp(data: object) -> float | int | None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(float | int | None | str | Unset, data)

        timestamp = _parse_timestamp(d.pop("timestamp", UNSET))

        def _parse_precise_total_amount_cents(data: object) -> bool | float | None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(bool | float | None | str | Unset, data)

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
            code=code,
            external_subscription_id=external_subscription_id,
            timestamp=timestamp,
            precise_total_amount_cents=precise_total_amount_cents,
            properties=properties,
        )

        event_input_object.additional_properties = d
        return event_input_object

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
