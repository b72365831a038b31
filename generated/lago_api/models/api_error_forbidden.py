from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..models.api_error_forbidden_status import ApiErrorForbiddenStatus, check_api_error_forbidden_status

T = TypeVar("T", bound="ApiErrorForbidden")


@_attrs_define
class ApiErrorForbidden:
    status: ApiErrorForbiddenStatus
    error: str
    code: str
    """ `write_action_not_allowed_for_event`. """

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
        status = check_api_error_forbidden_status(d.pop("status"))

        error = d.pop("error")

        code = d.pop("code")

        api_error_forbidden = cls(
            status=status,
            error=error,
            code=code,
        )

        return api_error_forbidden
