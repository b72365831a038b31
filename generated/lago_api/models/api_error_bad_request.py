from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..models.api_error_bad_request_status import ApiErrorBadRequestStatus, check_api_error_bad_request_status

T = TypeVar("T", bound="ApiErrorBadRequest")


@_attrs_define
class ApiErrorBadRequest:
    status: ApiErrorBadRequestStatus
    error: str

    def to_dict(self) -> dict[str, Any]:
        status: int = self.status

        error = self.error

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "status": status,
                "error": error,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        status = check_api_error_bad_request_status(d.pop("status"))

        error = d.pop("error")

        api_error_bad_request = cls(
            status=status,
            error=error,
        )

        return api_error_bad_request
