from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.event_properties import EventProperties


T = TypeVar("T", bound="EventEstimateFeesInputObject")


@_attrs_define
class EventEstimateFeesInputObject:
    """The event whose pay-in-advance fees to estimate."""

    code: str
    """ Code of the billable metric. """
    external_subscription_id: str
    properties: EventProperties | None | Unset = UNSET

    def to_dict(self) -> dict[str, Any]:
        from ..models.event_properties import EventProperties  # noqa: PLC0415

        code = self.code

        external_subscription_id = self.external_subscription_id

        properties: dict[str, Any] | None | Unset
        if isinstance(self.properties, Unset):
            properties = UNSET
        elif isinstance(self.properties, EventProperties):
            properties = self.properties.to_dict()
        else:
            properties = self.properties

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "code": code,
                "external_subscription_id": external_subscription_id,
            }
        )
        if properties is not UNSET:
            field_dict["properties"] = properties

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.event_properties import EventProperties  # noqa: PLC0415

        d = dict(src_dict)
        code = d.pop("code")

        external_subscription_id = d.pop("external_subscription_id")

        def _parse_properties(data: object) -> EventProperties | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, dict):
                    raise TypeError()
                properties_type_0 = EventProperties.from_dict(data)

                return properties_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(EventProperties | None | Unset, data)

        properties = _parse_properties(d.pop("properties", UNSET))

        event_estimate_fees_input_object = cls(
            code=code,
            external_subscription_id=external_subscription_id,
            properties=properties,
        )

        return event_estimate_fees_input_object
