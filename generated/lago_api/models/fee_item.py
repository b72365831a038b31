from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

T = TypeVar("T", bound="FeeItem")


@_attrs_define
class FeeItem:
    """What the fee charges for."""

    type_: str
    """ Kind of item, `charge` for a usage charge. """
    code: str
    name: str
    lago_item_id: str
    """ Lago's identifier of the charged item (for a charge, its billable metric). """
    item_type: str
    """ Class of the charged item, e.g. `BillableMetric`. """
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        type_ = self.type_

        code = self.code

        name = self.name

        lago_item_id = self.lago_item_id

        item_type = self.item_type

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "type": type_,
                "code": code,
                "name": name,
                "lago_item_id": lago_item_id,
                "item_type": item_type,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        type_ = d.pop("type")

        code = d.pop("code")

        name = d.pop("name")

        lago_item_id = d.pop("lago_item_id")

        item_type = d.pop("item_type")

        fee_item = cls(
            type_=type_,
            code=code,
            name=name,
            lago_item_id=lago_item_id,
            item_type=item_type,
        )

        fee_item.additional_properties = d
        return fee_item

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
