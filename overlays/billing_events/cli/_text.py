"""Bounding the text we keep or print, so one huge value never makes a table or a message huge."""

from __future__ import annotations

MAX_TEXT = 200


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters, with a note of how many were cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"
