"""Bounded text: no reason or log line we keep grows with the size of one value."""

from __future__ import annotations

MAX_TEXT = 200


def shorten(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"
