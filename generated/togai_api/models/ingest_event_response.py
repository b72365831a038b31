from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.ingest_details import IngestDetails


T = TypeVar("T", bound="IngestEventResponse")


@_attrs_define
class IngestEventResponse:
    """Outcome of an ingestion request. A fully accepted request answers `{"success": true}`."""

    success: bool | Unset = UNSET
    status_code: int | Unset = UNSET
    name: str | Unset = UNSET
    message: str | Unset = UNSET
    code: str | Unset = UNSET
    details: IngestDetails | Unset = UNSET
    """ Detail of a `207` answer. Togai documents this object as free-form;
    this project fixes the `rejectedEvents` list inside it and a client
    must cope with it being absent.
     """
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        success = self.success

        status_code = self.status_code

        name = self.name

        message = self.message

        code = self.code

        details: dict[str, Any] | Unset = UNSET
        if not isinstance(self.details, Unset):
            details = self.details.to_dict()

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update({})
        if success is not UNSET:
            field_dict["success"] = success
        if status_code is not UNSET:
            field_dict["statusCode"] = status_code
        if name is not UNSET:
            field_dict["name"] = name
        if message is not UNSET:
            field_dict["message"] = message
        if code is not UNSET:
            field_dict["code"] = code
        if details is not UNSET:
            field_dict["details"] = details

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.ingest_details import IngestDetails  # noqa: PLC0415

        d = dict(src_dict)
        success = d.pop("success", UNSET)

        status_code = d.pop("statusCode", UNSET)

        name = d.pop("name", UNSET)

        message = d.pop("message", UNSET)

        code = d.pop("code", UNSET)

        _details = d.pop("details", UNSET)
        details: IngestDetails | Unset
        if isinstance(_details, Unset):
            details = UNSET
        else:
            details = IngestDetails.from_dict(_details)

        ingest_event_response = cls(
            success=success,
            status_code=status_code,
            name=name,
            message=message,
            code=code,
            details=details,
        )

        ingest_event_response.additional_properties = d
        return ingest_event_response

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
