from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define

if TYPE_CHECKING:
    from ..models.event_estimate_fees_input_object import EventEstimateFeesInputObject


T = TypeVar("T", bound="EventEstimateFeesInput")


@_attrs_define
class EventEstimateFeesInput:
    event: EventEstimateFeesInputObject
    """ The event whose pay-in-advance fees to estimate. """

    def to_dict(self) -> dict[str, Any]:
        event = self.event.to_dict()

        field_dict: dict[str, Any] = {}

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

        return event_estimate_fees_input
