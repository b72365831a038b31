"""Error bodies in each provider's own shape."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from http import HTTPStatus

from billing_events.mock.jsonio import JsonResponse

# Togai caps `message` at 500 characters in its spec; Lago's fields carry no limit but stay readable.
MESSAGE_LIMIT = 500


class Provider(enum.StrEnum):
    TOGAI = "togai"
    LAGO = "lago"


def truncate(message: str, limit: int = MESSAGE_LIMIT) -> str:
    if len(message) <= limit:
        return message
    return message[: limit - 1] + "…"


def togai_error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JsonResponse:
    return JsonResponse({"message": truncate(message)}, status_code=status, headers=headers)


def lago_error(status: int, headers: Mapping[str, str] | None = None) -> JsonResponse:
    """Lago's bare `{"status", "error"}` body, e.g. for 401, 429 and 503."""
    return JsonResponse(
        {"status": status, "error": HTTPStatus(status).phrase}, status_code=status, headers=headers
    )


def lago_bad_request(param: str) -> JsonResponse:
    # The exact wording of Rails' ParameterMissing answer, which Lago passes through.
    error = f"BadRequest: param is missing or the value is empty or invalid: {param}"
    return JsonResponse({"status": 400, "error": error}, status_code=400)


def lago_body_too_large(limit: int) -> JsonResponse:
    error = f"BadRequest: the request body is larger than {limit} bytes"
    return JsonResponse({"status": 400, "error": error}, status_code=400)


def lago_not_found(code: str) -> JsonResponse:
    return JsonResponse({"status": 404, "error": "Not Found", "code": code}, status_code=404)


def lago_unprocessable(details: Mapping[str, object]) -> JsonResponse:
    body = {
        "status": 422,
        "error": "Unprocessable Entity",
        "code": "validation_errors",
        "error_details": details,
    }
    return JsonResponse(body, status_code=422)


def provider_error(
    provider: Provider | None, status: int, message: str, headers: Mapping[str, str] | None = None
) -> JsonResponse:
    """A status-only error (401, 404, 405, 429, 503) in the shape of whichever API the path belongs to.

    Lago has no 405: a wrong method is an unknown route there, answered like an unknown path.
    """
    if provider is Provider.LAGO:
        if status in (404, 405):
            # Rails sends every unrouted method and path to one catch-all: 404, before any token check.
            return lago_not_found("resource_not_found")
        return lago_error(status, headers)
    return togai_error(status, message, headers)
