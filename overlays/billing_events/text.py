"""Bounded text: no reason or log line we keep grows with the size of one value."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Any

from . import _constants as C

MAX_TEXT = C.MAX_VALUE_CHARS


def shorten(text: str, limit: int = MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit} more characters)"


# The range orjson (and most JSON parsers on the other side) read integers in: 64 bits.
MIN_JSON_INT = -(2**63)
MAX_JSON_INT = 2**64 - 1


def without_password(text: str, url: str) -> str:
    """``text`` (an error about ``url``, say) with the password ``url`` carries (``user:password@``) as ``***``.

    A parser's or a file system's message may quote the URL, or the path made of it, whole. The password
    is read as ``urlsplit`` reads it: in the authority (after ``//``, up to the first ``/``, ``?`` or
    ``#``), the user part up to its last ``@``, after the first ``:``.
    """
    if "//" not in url:
        return text
    userinfo, at, _ = url_authority(url).rpartition("@")
    _, colon, password = userinfo.partition(":")
    if not (at and colon and password):
        return text
    return text.replace(password, "***")


def url_authority(url: str) -> str:
    """The part of ``url`` that can carry ``user:password@``, read as a person wrote it: after ``//`` when
    there is one, up to the first ``/``, ``?`` or ``#``. (Without a scheme, httpx reads ``user`` as the
    scheme and finds no credentials in ``user:password@host``; this still finds them.)"""
    rest = url.partition("//")[2] if "//" in url else url
    for end in "/?#":
        rest = rest.split(end, 1)[0]
    return rest


def show(value: object, limit: int = C.MAX_VALUE_CHARS) -> str:
    """A short, readable rendering of a value in a message: its repr cut to ``limit``; a long integer by its
    size; a value whose repr breaks (a subclass's ``__repr__``) by its type. It never grows with the value."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**30:
        return integer_size(value)
    try:
        text = repr(value)
    except Exception:
        return f"a {type(value).__name__} that cannot be shown"
    return shorten(text, limit)


def integer_size(value: int) -> str:
    """ "an integer of N digits"; of N bits past the 4,300 digits Python writes (str() raises there)."""
    try:
        return f"an integer of {len(str(abs(value)))} digits"
    except ValueError:
        return f"an integer of {value.bit_length()} bits"


def shown(value: object) -> str:
    """``show`` cut shorter, for a bad option value in a configuration error."""
    return show(value, 80)


def json_type(value: object) -> str:
    """The JSON type name of a Python value, for "must be X, got Y" messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, Sequence):
        return "an array"
    return f"a {type(value).__name__}"


def field_path(prefix: str, path: Sequence[str | int]) -> str:
    """``event.properties.when`` or ``event.attributes[0].value``; each name shortened."""
    text = prefix
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{shorten(str(part), 60)}"
    return text


def nul_in(value: object, path: str = "event") -> str | None:
    """The path of the first text under ``value`` (a value or an object's key) that holds U+0000."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, Mapping):
        for name, item in value.items():
            if isinstance(name, str) and "\x00" in name:
                return f"{path} (a key)"
            found = nul_in(item, f"{path}.{shorten(str(name), 60)}")
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = nul_in(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def not_json(value: object, path: str = "event") -> tuple[str, str] | None:
    """The first value under ``value`` that JSON cannot carry as it is, as (field path, rule)."""
    if value is None or isinstance(value, bool) or (isinstance(value, str) and _utf8(value)):
        return None
    if isinstance(value, str):
        position = next(index for index, char in enumerate(value) if 0xD800 <= ord(char) <= 0xDFFF)
        return path, (
            f"has a lone surrogate (U+{ord(value[position]):04X}) at character {position}; "
            "it is not valid UTF-8 text"
        )
    if isinstance(value, int):
        if MIN_JSON_INT <= value <= MAX_JSON_INT:
            return None
        return path, (
            f"is {integer_size(value)}, outside the 64-bit range JSON numbers "
            "are exchanged in; send it as a string"
        )
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        name = "NaN" if math.isnan(value) else "Infinity"
        return path, f"{name} is not a JSON number; send null, a finite number or a string"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return path, (
            f"a {type(value).__name__} is not JSON data; send an ISO 8601 string "
            "(e.g. 2024-05-01T12:00:00Z) or what the field asks for"
        )
    if isinstance(value, Mapping):
        for name, item in value.items():
            if not isinstance(name, str):
                return path, f"has a key {show(name, 60)} that is not a string; JSON object keys are strings"
            if not _utf8(name):
                return path, f"has a key {show(name, 60)} with a lone surrogate; it is not valid UTF-8 text"
            found = not_json(item, f"{path}.{shorten(name, 60)}")
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = not_json(item, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    return path, f"a {type(value).__name__} is not JSON data"


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Rules of the specs' patterns, in words (the regular expressions mean little to a reader).
PATTERN_WORDS = {
    r"^-?[0-9]{1,512}(\.[0-9]+)?$": 'a decimal number written as a string, e.g. "12.5"',
    r"^-?[0-9]+(\.[0-9]+)?$": 'a decimal number written as a string, e.g. "12.5"',
    r"^[0-9]{1,11}(\.[0-9]+)?$": "a Unix time in seconds, e.g. 1714564800",
    # Lago's not-blank rule (Rails' `presence`): some character that is not whitespace.
    r"[^\t\n\v\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]": (
        "text that is not only whitespace"
    ),
}
DATE_TIME_WORDS = "an ISO 8601 date-time with a UTC offset, e.g. 2024-05-01T12:00:00Z"


def date_time_problem(value: object) -> str | None:
    """Why a string is not a date-time with an offset, in words; None when it looks like one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value[:64])
    except ValueError:
        return f"must be {DATE_TIME_WORDS}, got {show(value)}"
    if parsed.tzinfo is None:
        return (
            f"missing UTC offset: {show(value)} must say which time zone it is in, e.g. 2024-05-01T12:00:00Z"
        )
    return None


TYPE_WORDS = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "object": "an object",
    "array": "an array",
    "boolean": "a boolean",
    "null": "null",
}


def _need(kind: Any) -> str | None:
    """What a type or pattern rule asks for, in words ("an integer", "a Unix time ...")."""
    name = getattr(kind, "name", "")
    if name == "type":
        return " or ".join(TYPE_WORDS.get(str(t), str(t)) for t in getattr(kind, "types", []))
    if name == "pattern":
        pattern = str(getattr(kind, "pattern", ""))
        if "T[0-9]{2}:[0-9]{2}" in pattern:
            return DATE_TIME_WORDS
        return PATTERN_WORDS.get(pattern, f"text matching {shorten(pattern, 80)}")
    if name == "format" and getattr(kind, "format", "") == "date-time":
        return DATE_TIME_WORDS
    return None


def rule_in_words(kind: Any, instance: object) -> str | None:
    """A jsonschema_rs error kind as a short rule in words; None for kinds without one."""
    name = getattr(kind, "name", "")
    got = f"got {json_type(instance)} {show(instance)}" if instance is not None else "got null"
    if name in ("pattern", "format"):
        wanted = _need(kind)
        if wanted == DATE_TIME_WORDS and date_time_problem(instance) is not None:
            return date_time_problem(instance)
        if wanted is not None:
            return f"must be {wanted}, {got}"
    if name == "type":
        return f"must be {_need(kind)}, {got}"
    if name in ("oneOf", "anyOf"):
        needs = [_need(branch[0].kind) for branch in getattr(kind, "context", []) if branch]
        known = [need for need in needs if need]
        if known == [DATE_TIME_WORDS] and date_time_problem(instance) is not None:
            return date_time_problem(instance)
        if known and len(known) == len(needs):
            return f"must be {' or '.join(known)}, {got}"
        return f"must be one of the forms the spec allows for this field, {got}"
    if name in ("maxLength", "minLength"):
        most = "at most" if name == "maxLength" else "at least"
        size = len(instance) if isinstance(instance, str) else "?"
        return f"must be {most} {getattr(kind, 'limit', '?')} characters long, got {size}"
    if name in ("maxItems", "minItems"):
        most = "at most" if name == "maxItems" else "at least"
        size = len(instance) if isinstance(instance, list) else "?"
        return f"must have {most} {getattr(kind, 'limit', '?')} items, got {size}"
    if name == "additionalProperties":
        unexpected = ", ".join(shorten(str(n), 60) for n in list(getattr(kind, "unexpected", []))[:5])
        return f"has properties the spec does not allow: {unexpected}"
    if name == "enum":
        return f"must be one of {shorten(repr(getattr(kind, 'options', '')), 120)}, {got}"
    if name in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[name]
        return f"must be {words} {getattr(kind, 'limit', '?')}, {got}"
    return None


# How much of an oversized line is read at a time while it is skipped.
_SKIP_BLOCK = 1 << 20


def bounded_lines(source: IO[bytes], limit: int) -> Iterator[tuple[int, bytes | int]]:
    """``(number, line)`` for each line of ``source``, or ``(number, size)`` for one above ``limit``.

    An oversized line is skipped block by block, so memory stays bounded by the limit however long
    the line is.
    """
    number = 0
    while raw := source.readline(limit + 1):
        number += 1
        if len(raw) <= limit or raw.endswith(b"\n"):
            yield number, raw
            continue
        size = len(raw)
        while raw and not raw.endswith(b"\n"):
            raw = source.readline(_SKIP_BLOCK)
            size += len(raw)
        yield number, size
