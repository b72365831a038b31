from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.event_properties import EventProperties


T = TypeVar("T", bound="EventObject")


@_attrs_define
class EventObject:
    """A stored event."""

    transaction_id: str
    lago_customer_id: None | str
    """ Null on ingestion answers, because processing is asynchronous. """
    code: str
    timestamp: datetime.datetime
    """ ISO 8601 with milliseconds, e.g. `2022-04-29T08:59:51.123Z`. """
    lago_subscription_id: None | str
    """ Null on ingestion answers, because processing is asynchronous. """
    external_subscription_id: None | str
    """ Null when the event was sent without one. """
    lago_id: None | str | Unset = UNSET
    """ Lago's identifier of the event. Opaque; not always a UUID. """
    precise_total_amount_cents: None | str | Unset = UNSET
    """ Answered as a decimal string, whichever form it was sent in. """
    properties: EventProperties | None | Unset = UNSET
    created_at: datetime.datetime | None | Unset = UNSET
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from ..models.event_properties import EventProperties  # noqa: PLC0415

        transaction_id = self.transaction_id

        lago_customer_id: None | str
        lago_customer_id = self.lago_customer_id

        code = self.code

        timestamp = self.timestamp.isoformat()

        lago_subscription_id: None | str
        lago_subscription_id = self.lago_subscription_id

        external_subscription_id: None | str
        external_subscription_id = self.external_subscription_id

        lago_id: None | str | Unset
        if isinstance(self.lago_id, Unset):
            lago_id = UNSET
        else:
            lago_id = self.lago_id

        precise_total_amount_cents: None | str | Unset
        if isinstance(self.precise_total_amount_cents, Unset):
            precise_total_amount_cents = UNSET
        else:
            precise_total_amount_cents = self.precise_total_amount_cents

        properties: dict[str, Any] | None | Unset
        if isinstance(self.properties, Unset):
            properties = UNSET
        elif isinstance(self.properties, EventProperties):
            properties = self.properties.to_dict()
        else:
            properties = self.properties

        created_at: None | str | Unset
        if isinstance(self.created_at, Unset):
            created_at = UNSET
        elif isinstance(self.created_at, datetime.datetime):
            created_at = self.created_at.isoformat()
        else:
            created_at = self.created_at

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "transaction_id": transaction_id,
                "lago_customer_id": lago_customer_id,
                "code": code,
                "timestamp": timestamp,
                "lago_subscription_id": lago_subscription_id,
                "external_subscription_id": external_subscription_id,
            }
        )
        if lago_id is not UNSET:
            field_dict["lago_id"] = lago_id
        if precise_total_amount_cents is not UNSET:
            field_dict["precise_total_amount_cents"] = precise_total_amount_cents
        if properties is not UNSET:
            field_dict["properties"] = properties
        if created_at is not UNSET:
            field_dict["created_at"] = created_at

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.event_properties import EventProperties  # noqa: PLC0415

        d = dict(src_dict)
        transaction_id = d.pop("transaction_id")

        def _parse_lago_customer_id(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        lago_customer_id = _parse_lago_customer_id(d.pop("lago_customer_id"))

        code = d.pop("code")

        timestamp = datetime.datetime.fromisoformat(d.pop("timestamp"))

        def _parse_lago_subscription_id(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        lago_subscription_id = _parse_lago_subscription_id(d.pop("lago_subscription_id"))

        def _parse_external_subscription_id(data: object) -> None | str:
            if data is None:
                return data
            return cast(None | str, data)

        external_subscription_id = _parse_external_subscription_id(d.pop("external_subscription_id"))

        def _parse_lago_id(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        lago_id = _parse_lago_id(d.pop("lago_id", UNSET))

        def _parse_precise_total_amount_cents(data: object) -> None | str | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            return cast(None | str | Unset, data)

        precise_total_amount_cents = _parse_precise_total_amount_cents(d.pop("precise_total_amount_cents", UNSET))

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

        def _parse_created_at(data: object) -> datetime.datetime | None | Unset:
            if data is None:
                return data
            if isinstance(data, Unset):
                return data
            try:
                if not isinstance(data, str):
                    raise TypeError()
                created_at_type_0 = datetime.datetime.fromisoformat(data)

                return created_at_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | None | Unset, data)

        created_at = _parse_created_at(d.pop("created_at", UNSET))

        event_object = cls(
            transaction_id=transaction_id,
            lago_customer_id=lago_customer_id,
            code=code,
            timestamp=timestamp,
            lago_subscription_id=lago_subscription_id,
            external_subscription_id=external_subscription_id,
            lago_id=lago_id,
            precise_total_amount_cents=precise_total_amount_cents,
            properties=properties,
            created_at=created_at,
        )

        event_object.additional_properties = d
        return event_object

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
