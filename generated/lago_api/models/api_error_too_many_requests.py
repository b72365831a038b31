from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..models.api_error_too_many_requests_status import (
    ApiErrorTooManyRequestsStatus,
    check_api_error_too_many_requests_status,
)

T = TypeVar("T", bound="ApiErrorTooManyRequests")


@_attrs_define
class ApiErrorTooManyRequests:
    status: ApiErrorTooManyRequestsStatus
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
        status = check_api_error_too_many_requests_status(d.pop("status"))

        error = d.pop("error")

        api_error_too_many_requests = cls(
            status=status,
            error=error,
        )

        return api_error_too_many_requests
