"""The error hierarchy.

Per-event problems never raise out of ``send()``: they become outcomes, and the
outcome carries one of these errors. They are raised by the request-response
operations (``Lago.find_event``, ``Lago.estimate_fees``), by
``Report.raise_for_failures()``, and for bad configuration.
"""

from __future__ import annotations

from ._constants import MAX_REASON_CHARS, MAX_REQUEST_ID_CHARS
from .text import shorten


class BillingEventsError(Exception):
    """Base class of every error this package raises."""


class ConfigurationError(BillingEventsError, ValueError):
    """Bad client or sender configuration, such as a missing token."""


class InvalidEventError(BillingEventsError, ValueError):
    """An event breaks a rule of the provider's spec; it was not sent."""

    def __init__(self, field: str, rule: str, *, key: str | None = None, event: object = None) -> None:
        field, rule = shorten(field), shorten(rule, MAX_REASON_CHARS)
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule
        self.key = key
        self.event = event


class QueueFullError(BillingEventsError):
    """The background queue stayed full for the whole block timeout."""


class SenderClosedError(BillingEventsError):
    """``track()`` was called on a closed sender."""


class APIError(BillingEventsError):
    """The provider answered with an error status."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        provider: str | None = None,
    ) -> None:
        message = shorten(message, MAX_REASON_CHARS)
        if request_id:
            request_id = shorten(request_id, MAX_REQUEST_ID_CHARS)
        parts = [f"{provider}: " if provider else "", f"HTTP {status}: " if status else "", message]
        if request_id:
            parts.append(f" (request id {request_id})")
        super().__init__("".join(parts))
        self.message = message
        self.status = status
        self.request_id = request_id
        self.provider = provider


class AuthError(APIError):
    """401 or 403: the token is missing, wrong or not allowed."""


class RateLimitedError(APIError):
    """429: the provider asked us to slow down."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status: int | None = 429,
        request_id: str | None = None,
        provider: str | None = None,
    ) -> None:
        super().__init__(message, status=status, request_id=request_id, provider=provider)
        self.retry_after = retry_after


class RejectedError(APIError):
    """The provider refused the event(s) as invalid; re-sending will not help."""


class NotFoundError(APIError):
    """404: the event, subscription or billable metric does not exist."""


class ServerError(APIError):
    """5xx or another status worth retrying."""


class TransportError(BillingEventsError):
    """The request did not complete: connection refused, reset or dropped."""


class RequestTimeoutError(TransportError):
    """The request did not complete within its timeout."""
