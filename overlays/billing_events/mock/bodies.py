"""Reading a JSON request body: media type, size cap and strict decoding."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable

from starlette.requests import Request

from billing_events.mock.jsonio import MalformedJson, parse_json

# Bodies a spec leaves unbounded are still capped, so a runaway client cannot exhaust the mock's memory.
FALLBACK_MAX_BYTES = 16 * 1024 * 1024
# Bodies above the cap are still read (and thrown away) up to this size, so the client can finish sending
# and read the answer instead of failing with a reset connection.
DRAIN_LIMIT = 64 * 1024 * 1024
# An admin route's settings (faults, rate limits, the Lago store) are a few hundred bytes. Those routes need
# no token, so anyone who reaches the mock could otherwise make it hold any body in memory.
ADMIN_MAX_BYTES = 64 * 1024


class BodyProblem(enum.Enum):
    TOO_LARGE = "too_large"
    NOT_JSON_MEDIA_TYPE = "not_json_media_type"
    EMPTY = "empty"
    MALFORMED = "malformed"


class BodyRejected(Exception):
    def __init__(self, problem: BodyProblem, detail: str) -> None:
        super().__init__(detail)
        self.problem = problem
        self.detail = detail


# The media types Rails parses into params as JSON: the type registered as :json and its aliases (actionpack
# `mime_types.rb`). Any other type, `application/vnd.api+json` too, leaves the params empty.
RAILS_JSON_MEDIA_TYPES = frozenset({"application/json", "text/x-json", "application/jsonrequest"})


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json_media_type(content_type: str | None) -> bool:
    """JSON as Togai reads it: `application/json` or any `application/*+json`."""
    media_type = _media_type(content_type)
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def is_rails_json_media_type(content_type: str | None) -> bool:
    """JSON as Lago (Rails) reads it: only the types in RAILS_JSON_MEDIA_TYPES. Rails takes the media type up
    to the first `,` or `;` (actionpack `mime_negotiation.rb`, `content_mime_type`)."""
    media_type = re.split("[,;]", content_type or "", maxsplit=1)[0].strip().lower()
    return media_type in RAILS_JSON_MEDIA_TYPES


async def _read_capped(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > DRAIN_LIMIT:
        raise BodyRejected(BodyProblem.TOO_LARGE, f"the request body is larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > DRAIN_LIMIT:
            break
        if size <= max_bytes:
            chunks.append(chunk)
    if size > max_bytes:
        raise BodyRejected(BodyProblem.TOO_LARGE, f"the request body is larger than {max_bytes} bytes")
    return b"".join(chunks)


async def read_json(
    request: Request, max_bytes: int, is_json: Callable[[str | None], bool] = is_json_media_type
) -> object:
    """The decoded body, or BodyRejected naming what is wrong with it; `is_json` judges the Content-Type."""
    if not is_json(request.headers.get("content-type")):
        # Still consume the body so a keep-alive connection stays usable.
        await _read_capped(request, max_bytes)
        raise BodyRejected(
            BodyProblem.NOT_JSON_MEDIA_TYPE, "the request body must be sent as application/json"
        )
    body = await _read_capped(request, max_bytes)
    if not body:
        raise BodyRejected(BodyProblem.EMPTY, "the request body is empty")
    try:
        return parse_json(body)
    except MalformedJson as exc:
        raise BodyRejected(BodyProblem.MALFORMED, str(exc)) from None


async def read_settings(request: Request) -> object:
    """An admin route's decoded body, whatever its Content-Type, read at most to ADMIN_MAX_BYTES (and drained to
    DRAIN_LIMIT), or BodyRejected: too large or not one JSON document."""
    body = await _read_capped(request, ADMIN_MAX_BYTES)
    try:
        return parse_json(body)
    except MalformedJson as exc:
        raise BodyRejected(BodyProblem.MALFORMED, str(exc)) from None
