from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

if TYPE_CHECKING:
    from ..models.event_estimate_fees_input_object import EventEstimateFeesInputObject


T = TypeVar("T", bound="EventEstimateFeesInput")


@_attrs_define
class EventEstimateFeesInput:
    """The event to estimate. Other top-level keys are ignored by the server."""

    event: EventEstimateFeesInputObject
    """ The event whose pay-in-advance fees to estimate. Keys the server does
    not know are dropped.
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
        from ..models.event_estimate_fees_input_object import EventEstimateFeesInputObject  # noqa: PLC0415

        d = dict(src_dict)
        event = EventEstimateFeesInputObject.from_dict(d.pop("event"))

        event_estimate_fees_input = cls(
            event=event,
        )

        event_estimate_fees_input.additional_properties = d
        return event_estimate_fees_input

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
