from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from attrs import define as _attrs_define

from ..types import UNSET, Unset

if TYPE_CHECKING:
    from ..models.attribute import Attribute
    from ..models.event_dimensions import EventDimensions


T = TypeVar("T", bound="Event")


@_attrs_define
class Event:
    """A usage event of one account."""

    schema_name: str
    """ Name of the event schema the event belongs to. """
    timestamp: datetime.datetime | str
    """ When the usage happened: an RFC 3339 date-time with a UTC offset,
    e.g. `2024-05-01T10:15:30Z`, or the same without the offset,
    which Togai's published document allows.
     """
    account_id: str
    """ The customer account the usage is billed to. """
    attributes: list[Attribute]
    """ Numeric measurements of the event. """
    dimensions: EventDimensions
    """ String labels of the event, used to filter and group usage. """
    id: str | Unset = UNSET
    """ Idempotency key. An event whose `id` was accepted in the last 45
    days is answered with `202` and not counted again. An empty `id`
    is accepted and deduplicates nothing.
     """

    def to_dict(self) -> dict[str, Any]:
        schema_name = self.schema_name

        timestamp: str
        if isinstance(self.timestamp, datetime.datetime):
            timestamp = self.timestamp.isoformat()
        else:
            timestamp = self.timestamp

        account_id = self.account_id

        attributes = []
        for attributes_item_data in self.attributes:
            attributes_item = attributes_item_data.to_dict()
            attributes.append(attributes_item)

        dimensions = self.dimensions.to_dict()

        id = self.id

        field_dict: dict[str, Any] = {}

        field_dict.update(
            {
                "schemaName": schema_name,
                "timestamp": timestamp,
                "accountId": account_id,
                "attributes": attributes,
                "dimensions": dimensions,
            }
        )
        if id is not UNSET:
            field_dict["id"] = id

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.attribute import Attribute  # noqa: PLC0415
        from ..models.event_dimensions import EventDimensions  # noqa: PLC0415

        d = dict(src_dict)
        schema_name = d.pop("schemaName")

        def _parse_timestamp(data: object) -> datetime.datetime | str:
            try:
                if not isinstance(data, str):
                    raise TypeError()
                timestamp_type_0 = datetime.datetime.fromisoformat(data)

                return timestamp_type_0
            except (TypeError, ValueError, AttributeError, KeyError):
                pass
            return cast(datetime.datetime | str, data)

        timestamp = _parse_timestamp(d.pop("timestamp"))

        account_id = d.pop("accountId")

        attributes = []
        _attributes = d.pop("attributes")
        for attributes_item_data in _attributes:
            attributes_item = Attribute.from_dict(attributes_item_data)

            attributes.append(attributes_item)

        dimensions = EventDimensions.from_dict(d.pop("dimensions"))

        id = d.pop("id", UNSET)

        event = cls(
            schema_name=schema_name,
            timestamp=timestamp,
            account_id=account_id,
            attributes=attributes,
            dimensions=dimensions,
            id=id,
        )

        return event
