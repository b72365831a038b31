from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define

if TYPE_CHECKING:
    from ..models.fee_object import FeeObject


T = TypeVar("T", bound="FeesResponse")


@_attrs_define
class FeesResponse:
    fees: list[FeeObject]

    def to_dict(self) -> dict[str, Any]:
        fees = []
        for fees_item_data in self.fees:
            fees_item = fees_item_data.to_dict()
            fees.append(fees_item)

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "fees": fees,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.fee_object import FeeObject  # noqa: PLC0415

        d = dict(src_dict)
        fees = []
        _fees = d.pop("fees")
        for fees_item_data in _fees:
            fees_item = FeeObject.from_dict(fees_item_data)

            fees.append(fees_item)

        fees_response = cls(
            fees=fees,
        )

        return fees_response
