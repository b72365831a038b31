"""Strict JSON decoding and encoding of request and response bodies."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.background import BackgroundTask
from starlette.responses import Response


class MalformedJson(ValueError):
    """The body is not one strict JSON document."""


def _reject_constant(name: str) -> Any:
    raise MalformedJson(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise MalformedJson(f"number {text} is out of range")
    return number


def parse_json(body: bytes) -> object:
    """Decode a UTF-8 JSON body; the stdlib parser keeps big integers exact, which orjson would turn into floats."""
    try:
        text = body.decode("utf-8")
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except MalformedJson:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedJson(f"body is not valid JSON: {exc}") from None


def dump_json(value: object) -> bytes:
    """Encode compactly; falls back to the stdlib for integers beyond 64 bits and lone surrogates."""
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False).encode("ascii")


class JsonResponse(Response):
    media_type = "application/json"

    def __init__(
        self,
        content: object,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        super().__init__(content, status_code, headers, self.media_type, background)

    def render(self, content: Any) -> bytes:
        return dump_json(content)
