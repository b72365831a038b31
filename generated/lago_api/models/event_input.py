from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

if TYPE_CHECKING:
    from ..models.event_input_object import EventInputObject


T = TypeVar("T", bound="EventInput")


@_attrs_define
class EventInput:
    """One event to store. Other top-level keys are ignored by the server."""

    event: EventInputObject
    """ A usage event of one subscription. The server drops keys it does not
    know without an error, and stores an event without
    `external_subscription_id` that it can never bill.
     """
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        event = self.event.to_dict()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "event": event,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.event_input_object import EventInputObject  # noqa: PLC0415

        d = dict(src_dict)
        event = EventInputObject.from_dict(d.pop("event"))

        event_input = cls(
            event=event,
        )

        event_input.additional_properties = d
        return event_input

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
