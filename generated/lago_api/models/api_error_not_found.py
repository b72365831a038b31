from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..models.api_error_not_found_status import ApiErrorNotFoundStatus, check_api_error_not_found_status

T = TypeVar("T", bound="ApiErrorNotFound")


@_attrs_define
class ApiErrorNotFound:
    status: ApiErrorNotFoundStatus
    error: str
    code: str
    """ `event_not_found`, `subscription_not_found` or
    `billable_metric_not_found`; `resource_not_found` for a path or
    method the server does not route.
     """

    def to_dict(self) -> dict[str, Any]:
        status: int = self.status

        error = self.error

        code = self.code

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "status": status,
                "error": error,
                "code": code,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        status = check_api_error_not_found_status(d.pop("status"))

        error = d.pop("error")

        code = d.pop("code")

        api_error_not_found = cls(
            status=status,
            error=error,
            code=code,
        )

        return api_error_not_found
