"""Contains all the data models used in inputs/outputs"""

from .attribute import Attribute
from .error_response import ErrorResponse
from .event import Event
from .event_dimensions import EventDimensions
from .ingest_batch_event_request import IngestBatchEventRequest
from .ingest_details import IngestDetails
from .ingest_event_request import IngestEventRequest
from .ingest_event_response import IngestEventResponse
from .rejected_event import RejectedEvent

__all__ = (
    "Attribute",
    "ErrorResponse",
    "Event",
    "EventDimensions",
    "IngestBatchEventRequest",
    "IngestDetails",
    "IngestEventRequest",
    "IngestEventResponse",
    "RejectedEvent",
)
