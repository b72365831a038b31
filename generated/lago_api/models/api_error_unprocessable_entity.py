from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define

from ..models.api_error_unprocessable_entity_status import (
    ApiErrorUnprocessableEntityStatus,
    check_api_error_unprocessable_entity_status,
)
from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.api_error_unprocessable_entity_error_extra import ApiErrorUnprocessableEntityErrorExtra
    from ..models.validation_error_details import ValidationErrorDetails


T = TypeVar("T", bound="ApiErrorUnprocessableEntity")


@_attrs_define
class ApiErrorUnprocessableEntity:
    status: ApiErrorUnprocessableEntityStatus
    error: str
    code: str
    error_details: str | ValidationErrorDetails
    """ Field errors (`{"field": ["code", ...]}`), batch errors keyed by
    event index (`{"1": {"field": ["code"]}}`), or a message string when
    a billable-metric expression fails.
     """
    error_extra: ApiErrorUnprocessableEntityErrorExtra | Unset = UNSET
    """ Further detail of some refusals; `{}` on event validation errors. """

    def to_dict(self) -> dict[str, Any]:
        from ..models.validation_error_details import ValidationErrorDetails  # noqa: PLC0415

        status: int = self.status

        error = self.error

        code = self.code

        error_details: dict[str, Any] | str
        if isinstance(self.error_details, ValidationErrorDetails):
            error_details = self.error_details.to_dict()
        else:
            error_details = self.error_details

        error_extra: dict[str, Any] | Unset = UNSET
        if not isinstance(self.error_extra, Unset):
            error_extra = self.error_extra.to_dict()

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "status": status,
                "error": error,
                "code": code,
                "error_details": error_details,
            }
        )
        if error_extra is not UNSET:
            field_dict["error_extra"] = error_extra

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.api_error_unprocessable_entity_error_extra import ApiErrorUnprocessableEntityErrorExtra  # noqa: PLC0415
        from ..models.validation_error_details import ValidationErrorDetails  # noqa: PLC0415

        d = dict(src_dict)
        status = check_api_error_unprocessable_entity_status(d.pop("status"))

        error = d.pop("error")

        code = d.pop("code")

        def _parse_error_details(data: object) -> str | ValidationErrorDetails:
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                error_details_type_0 = ValidationErrorDetails.from_dict(data)

                return error_details_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(str | ValidationErrorDetails, data)

        error_details = _parse_error_details(d.pop("error_details"))

        _error_extra = d.pop("error_extra", UNSET)
        error_extra: ApiErrorUnprocessableEntityErrorExtra | Unset
        if isinstance(_error_extra, Unset):
            error_extra = UNSET
        else:
            error_extra = ApiErrorUnprocessableEntityErrorExtra.from_dict(_error_extra)

        api_error_unprocessable_entity = cls(
            status=status,
            error=error,
            code=code,
            error_details=error_details,
            error_extra=error_extra,
        )

        return api_error_unprocessable_entity
