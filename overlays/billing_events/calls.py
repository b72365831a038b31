"""Request-response calls (Lago's findEvent and estimate_fees) with retries and typed errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from lago_api.errors import UnexpectedStatus
from lago_api.models import ApiErrorNotFound, ApiErrorUnauthorized, ApiErrorUnprocessableEntity
from lago_api.types import Response

from . import _constants as C
from ._transport import call_deadline
from .delivery import transport_error
from .errors import APIError, AuthError, NotFoundError, RateLimitedError, RejectedError, ServerError
from .retry import RetryableFailure, RetryPolicy, retry_after_seconds

T = TypeVar("T")


def _failure(exc: Exception, provider: str) -> Exception:
    """What a failed call raises: RetryableFailure when another try may help, else a typed error."""
    if isinstance(exc, UnexpectedStatus):
        message = exc.content.decode("utf-8", "replace")[:500]
        if exc.status_code in C.RETRYABLE_STATUSES:
            return RetryableFailure(ServerError(message, status=exc.status_code, provider=provider), None)
        return APIError(message, status=exc.status_code, provider=provider)
    if isinstance(exc, httpx.TransportError):
        return RetryableFailure(transport_error(exc), None)
    # The generated parser raises ValueError on a status outside HTTPStatus (a proxy's 520, say)
    # or a body that is not JSON; these calls change nothing, so another try is safe.
    return RetryableFailure(ServerError(f"unreadable answer: {exc}", provider=provider), None)


# ValueError/KeyError/TypeError: the generated parser met a status or a body it cannot read.
_CALL_ERRORS = (UnexpectedStatus, httpx.TransportError, ValueError, KeyError, TypeError)


def _unless_retryable(response: Response[T], provider: str) -> Response[T]:
    """The response, or RetryableFailure for a documented 429/503 (with the server's wait hint)."""
    status = int(response.status_code)
    if status not in C.RETRYABLE_STATUSES:
        return response
    hint = retry_after_seconds(response.headers)
    message = response.content.decode("utf-8", "replace")[:500]
    error: APIError = (
        RateLimitedError(message, retry_after=hint, status=status, provider=provider)
        if status == 429
        else ServerError(message, status=status, provider=provider)
    )
    raise RetryableFailure(error, hint)


def retryable_call(policy: RetryPolicy, call: Callable[[], Response[T]], provider: str) -> Response[T]:
    deadline = policy.call_deadline()
    try:
        for attempt in policy.retrying(deadline):
            with attempt:
                try:
                    with call_deadline(deadline):
                        response = call()
                except _CALL_ERRORS as exc:
                    raise _failure(exc, provider) from None
                return _unless_retryable(response, provider)
    except RetryableFailure as exhausted:
        raise exhausted.cause from None
    raise AssertionError("unreachable")


async def async_retryable_call(
    policy: RetryPolicy, call: Callable[[], Awaitable[Response[T]]], provider: str
) -> Response[T]:
    deadline = policy.call_deadline()
    try:
        async for attempt in policy.async_retrying(deadline):
            with attempt:
                try:
                    with call_deadline(deadline):
                        response = await call()
                except _CALL_ERRORS as exc:
                    raise _failure(exc, provider) from None
                return _unless_retryable(response, provider)
    except RetryableFailure as exhausted:
        raise exhausted.cause from None
    raise AssertionError("unreachable")


def lago_answer(response: Response[Any], expected: type[T]) -> T:
    """The parsed success body, or the matching typed error."""
    parsed = response.parsed
    if isinstance(parsed, expected):
        return parsed
    status = int(response.status_code)
    rid = response.headers.get("x-request-id")
    if isinstance(parsed, ApiErrorNotFound):
        raise NotFoundError(f"{parsed.error} ({parsed.code})", status=status, request_id=rid, provider="lago")
    if isinstance(parsed, ApiErrorUnauthorized):
        raise AuthError(parsed.error, status=status, request_id=rid, provider="lago")
    if isinstance(parsed, ApiErrorUnprocessableEntity):
        details = (
            parsed.error_details if isinstance(parsed.error_details, str) else parsed.error_details.to_dict()
        )
        raise RejectedError(f"{parsed.code}: {details}", status=status, request_id=rid, provider="lago")
    text = response.content.decode("utf-8", "replace")[:500]
    raise APIError(text, status=status, request_id=rid, provider="lago")
