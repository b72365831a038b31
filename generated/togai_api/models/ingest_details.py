from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.rejected_event import RejectedEvent


T = TypeVar("T", bound="IngestDetails")


@_attrs_define
class IngestDetails:
    """Detail of a `207` answer. Togai documents this object as free-form;
    this project fixes the `rejectedEvents` list inside it and a client
    must cope with it being absent.

    """

    rejected_events: list[RejectedEvent] | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        rejected_events: list[dict[str, Any]] | Unset = UNSET
        if not isinstance(self.rejected_events, Unset):
            rejected_events = []
            for rejected_events_item_data in self.rejected_events:
                rejected_events_item = rejected_events_item_data.to_dict()
                rejected_events.append(rejected_events_item)

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({})
        if rejected_events is not UNSET:
            field_dict["rejectedEvents"] = rejected_events

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.rejected_event import RejectedEvent  # noqa: PLC0415

        d = dict(src_dict)
        _rejected_events = d.pop("rejectedEvents", UNSET)
        rejected_events: list[RejectedEvent] | Unset = UNSET
        if _rejected_events is not UNSET:
            rejected_events = []
            for rejected_events_item_data in _rejected_events:
                rejected_events_item = RejectedEvent.from_dict(rejected_events_item_data)

                rejected_events.append(rejected_events_item)

        ingest_details = cls(
            rejected_events=rejected_events,
        )

        ingest_details.additional_properties = d
        return ingest_details

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
