"""Request-response calls (Lago's findEvent and estimate_fees) with retries and typed errors.

The answer is read by its status first, and its body only then: a 401, 403 or 429 from a proxy or a
CDN, whose body is a page and not Lago's JSON, is still an AuthError or a RateLimitedError with its
``Retry-After``. The generated operations build the request (path escaping, body); the success body
is read by the generated model.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import httpx
import orjson

from lago_api.api.events import find_event

from . import _constants as C
from ._transport import call_deadline
from .delivery import transport_error
from .errors import (
    APIError,
    AuthError,
    InvalidEventError,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    ServerError,
)
from .providers.base import request_id
from .retry import RetryableFailure, RetryPolicy, retry_after_seconds
from .text import shorten

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)


class Model(Protocol[T_co]):
    """A generated response model: built from the answer's JSON object."""

    def from_dict(self, src_dict: Any, /) -> T_co: ...


def find_request(transaction_id: str) -> dict[str, Any]:
    """The request of Lago's findEvent, built by the generated operation (the id escaped into the path).

    Every dot of the id goes as ``%2E``, which lago-api's router reads back as a dot: a plain dot may
    end the id and begin a format (``evt.json`` would find ``evt``), and an id of ``.`` or ``..`` would be
    a dot-segment, which URL rules remove before the request leaves (``/events/.`` is the events list).
    """
    if not isinstance(transaction_id, str) or not transaction_id:
        raise InvalidEventError("transaction_id", "must be a non-empty string")
    request: dict[str, Any] = find_event._get_kwargs(transaction_id)
    prefix = "/events/"
    url = request["url"]
    if isinstance(url, str) and url.startswith(prefix):
        request["url"] = prefix + url[len(prefix) :].replace(".", "%2E")
    return request


# The body of an error answer kept in the error's message, at most.
_ERROR_TEXT_CHARS = 500


def _answer(response: httpx.Response, model: Model[T], provider: str) -> T:
    """The parsed success body; else the typed error (RetryableFailure when another try may help)."""
    status = response.status_code
    if status in C.RETRYABLE_STATUSES:
        hint = retry_after_seconds(response.headers)
        error: APIError = (
            RateLimitedError(
                _error_text(response),
                retry_after=hint,
                status=status,
                request_id=request_id(response),
                provider=provider,
            )
            if status == 429
            else ServerError(
                _error_text(response), status=status, request_id=request_id(response), provider=provider
            )
        )
        raise RetryableFailure(error, hint)
    if not 200 <= status < 300:
        raise _error(response, provider)
    try:
        return model.from_dict(orjson.loads(response.content))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        # A success whose body is not the documented JSON: these calls change nothing, so another try is safe.
        raise RetryableFailure(
            ServerError(
                f"unreadable answer: {shorten(str(exc))}",
                status=status,
                request_id=request_id(response),
                provider=provider,
            ),
            None,
        ) from None


def _error(response: httpx.Response, provider: str) -> APIError:
    """The typed error of a 4xx that another try will not mend, by status whatever its body."""
    status = response.status_code
    kind: type[APIError] = APIError
    if status in (401, 403):
        kind = AuthError
    elif status == 404:
        kind = NotFoundError
    elif status in (400, 422):
        kind = RejectedError
    elif status >= 500:
        kind = ServerError  # one not worth retrying (501, 505): still the server's error
    return kind(_error_text(response), status=status, request_id=request_id(response), provider=provider)


def _error_text(response: httpx.Response) -> str:
    """Lago's error body in words (``error (code)``, or ``code: details`` for a 422); else the body's text."""
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        code, details = body.get("code"), body.get("error_details")
        if details is not None and code is not None:
            return shorten(f"{code}: {details}", _ERROR_TEXT_CHARS)
        return shorten(f"{body['error']} ({code})" if code is not None else body["error"], _ERROR_TEXT_CHARS)
    text = response.content.decode("utf-8", "replace")
    return (
        shorten(text, _ERROR_TEXT_CHARS)
        if text.strip()
        else response.reason_phrase or f"HTTP {response.status_code}"
    )


def retryable_call(
    policy: RetryPolicy, call: Callable[[], httpx.Response], model: Model[T], provider: str
) -> T:
    """``call()`` until it answers with a success that ``model`` reads, or a typed error."""
    deadline = policy.call_deadline()
    try:
        for attempt in policy.retrying(deadline):
            with attempt:
                try:
                    with call_deadline(deadline):
                        response = call()
                except httpx.TransportError as exc:
                    raise RetryableFailure(transport_error(exc), None) from None
                return _answer(response, model, provider)
    except RetryableFailure as exhausted:
        raise exhausted.cause from None
    raise AssertionError("unreachable")


async def async_retryable_call(
    policy: RetryPolicy, call: Callable[[], Awaitable[httpx.Response]], model: Model[T], provider: str
) -> T:
    deadline = policy.call_deadline()
    try:
        async for attempt in policy.async_retrying(deadline):
            with attempt:
                try:
                    with call_deadline(deadline):
                        response = await call()
                except httpx.TransportError as exc:
                    raise RetryableFailure(transport_error(exc), None) from None
                return _answer(response, model, provider)
    except RetryableFailure as exhausted:
        raise exhausted.cause from None
    raise AssertionError("unreachable")
