from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define

if TYPE_CHECKING:
    from ..models.event_object import EventObject


T = TypeVar("T", bound="EventResponse")


@_attrs_define
class EventResponse:
    event: EventObject
    """ A stored event. """

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
        from ..models.event_object import EventObject  # noqa: PLC0415

        d = dict(src_dict)
        event = EventObject.from_dict(d.pop("event"))

        event_response = cls(
            event=event,
        )

        return event_response
