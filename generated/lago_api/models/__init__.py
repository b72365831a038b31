"""Contains all the data models used in inputs/outputs"""

from .api_error_bad_request import ApiErrorBadRequest
from .api_error_bad_request_status import ApiErrorBadRequestStatus
from .api_error_forbidden import ApiErrorForbidden
from .api_error_forbidden_status import ApiErrorForbiddenStatus
from .api_error_not_found import ApiErrorNotFound
from .api_error_not_found_status import ApiErrorNotFoundStatus
from .api_error_service_unavailable import ApiErrorServiceUnavailable
from .api_error_service_unavailable_status import ApiErrorServiceUnavailableStatus
from .api_error_too_many_requests import ApiErrorTooManyRequests
from .api_error_too_many_requests_status import ApiErrorTooManyRequestsStatus
from .api_error_unauthorized import ApiErrorUnauthorized
from .api_error_unauthorized_status import ApiErrorUnauthorizedStatus
from .api_error_unprocessable_entity import ApiErrorUnprocessableEntity
from .api_error_unprocessable_entity_error_extra import ApiErrorUnprocessableEntityErrorExtra
from .api_error_unprocessable_entity_status import ApiErrorUnprocessableEntityStatus
from .event_batch_input import EventBatchInput
from .event_estimate_fees_input import EventEstimateFeesInput
from .event_estimate_fees_input_object import EventEstimateFeesInputObject
from .event_input import EventInput
from .event_input_object import EventInputObject
from .event_object import EventObject
from .event_properties import EventProperties
from .event_response import EventResponse
from .events_response import EventsResponse
from .fee_item import FeeItem
from .fee_object import FeeObject
from .fee_object_payment_status import FeeObjectPaymentStatus
from .fees_response import FeesResponse
from .field_errors import FieldErrors
from .validation_error_details import ValidationErrorDetails

__all__ = (
    "ApiErrorBadRequest",
    "ApiErrorBadRequestStatus",
    "ApiErrorForbidden",
    "ApiErrorForbiddenStatus",
    "ApiErrorNotFound",
    "ApiErrorNotFoundStatus",
    "ApiErrorServiceUnavailable",
    "ApiErrorServiceUnavailableStatus",
    "ApiErrorTooManyRequests",
    "ApiErrorTooManyRequestsStatus",
    "ApiErrorUnauthorized",
    "ApiErrorUnauthorizedStatus",
    "ApiErrorUnprocessableEntity",
    "ApiErrorUnprocessableEntityErrorExtra",
    "ApiErrorUnprocessableEntityStatus",
    "EventBatchInput",
    "EventEstimateFeesInput",
    "EventEstimateFeesInputObject",
    "EventInput",
    "EventInputObject",
    "EventObject",
    "EventProperties",
    "EventResponse",
    "EventsResponse",
    "FeeItem",
    "FeeObject",
    "FeeObjectPaymentStatus",
    "FeesResponse",
    "FieldErrors",
    "ValidationErrorDetails",
)
