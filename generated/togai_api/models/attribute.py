from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from attrs import define as _attrs_define

from ..types import UNSET, Unset

T = TypeVar("T", bound="Attribute")


@_attrs_define
class Attribute:
    """A named numeric measurement."""

    name: str
    value: str
    """ The measured amount as a decimal string, e.g. `"12.5"`. """
    unit: str | Unset = UNSET
    """ Unit of the amount. Documented units are Meters, Miles, Kilometers,
    Grams, Kilograms, ounces, Pounds, Minutes, Hours, Seconds,
    Milliseconds, Microseconds and None; other units are allowed.
     """

    def to_dict(self) -> dict[str, Any]:
        name = self.name

        value = self.value

        unit = self.unit

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "name": name,
                "value": value,
            }
        )
        if unit is not UNSET:
            field_dict["unit"] = unit

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        d = dict(src_dict)
        name = d.pop("name")

        value = d.pop("value")

        unit = d.pop("unit", UNSET)

        attribute = cls(
            name=name,
            value=value,
            unit=unit,
        )

        return attribute
