from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

T = TypeVar("T", bound="RejectedEvent")


@_attrs_define
class RejectedEvent:
    """One event of a batch that was not accepted."""

    index: int
    """ Zero-based position of the event in the request's `events`. """
    message: str
    """ Why the event was not accepted. """
    id: str | Unset = UNSET
    """ The event's `id`, when it had one. """

    def to_dict(self) -> dict[str, Any]:
        index = self.index

        message = self.message

        id = self.id

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "index": index,
                "message": message,
            }
        )
        if id is not UNSET:
            field_dict["id"] = id

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        index = d.pop("index")

        message = d.pop("message")

        id = d.pop("id", UNSET)

        rejected_event = cls(
            index=index,
            message=message,
            id=id,
        )

        return rejected_event
