from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define

if TYPE_CHECKING:
    from ..models.event_input_object import EventInputObject


T = TypeVar("T", bound="EventInput")


@_attrs_define
class EventInput:
    """One event to store."""

    event: EventInputObject
    """ A usage event of one subscription. """

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
        from ..models.event_input_object import EventInputObject  # noqa: PLC0415

        d = dict(src_dict)
        event = EventInputObject.from_dict(d.pop("event"))

        event_input = cls(
            event=event,
        )

        return event_input
