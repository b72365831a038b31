"""Reading an input file into numbered records, one per event line, CSV row or Parquet/Arrow row.

A record either carries an event (a dict) or says why its line could not
become one. Line numbers are 1-based and count physical lines, so a CSV
header is line 1 and its first row line 2; in Parquet and Arrow files they
count rows.
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Literal

import orjson
from attrs import frozen

from ..text import bounded_lines
from . import _columnar
from ._state import Known
from ._text import clip

InputFormat = Literal["jsonl", "csv", "parquet", "arrow"]
FORMATS: tuple[InputFormat, ...] = ("jsonl", "csv", "parquet", "arrow")
COLUMNAR = ("parquet", "arrow")
STDIN = "-"

_READ_BLOCK = 1 << 20
_BOM = b"\xef\xbb\xbf"
# orjson reads integers beyond [-2**63, 2**64) as floats: a run of 19+ digits sends the line to the exact parser.
_LONG_DIGITS = re.compile(rb"\d{19,}")
_INT_RANGE = (-(2**63), 2**64 - 1)


class InputError(Exception):
    """The input cannot be read at all (as opposed to one bad line)."""


@frozen
class Record:
    """One line (or CSV row) of the input.

    ``fingerprint`` names the line in the state; ``earlier`` is what the state
    says about a line an earlier run settled (it is then not sent again). A
    ``problem`` without an event makes the line invalid; with its event, the
    event is rejected without being sent (its key belongs to another event).
    """

    line: int
    event: dict[str, object] | None
    problem: str | None = None
    fingerprint: bytes | None = None
    earlier: Known | None = None


@frozen
class InputFile:
    """A readable copy of the input, and how many records it has (for the progress bar; None: unknown)."""

    path: Path
    label: str
    records: int | None
    format: InputFormat
    spooled: bool

    def discard(self) -> None:
        """Remove the spooled copy of standard input, if any."""
        if self.spooled:
            self.path.unlink(missing_ok=True)


def guess_format(name: str) -> InputFormat:
    """The format named by the file's extension; JSONL when it names none."""
    lower = name.lower()
    if lower.endswith((".csv", ".csv.txt")):
        return "csv"
    if lower.endswith((".parquet", ".pq")):
        return "parquet"
    if lower.endswith((".arrow", ".arrows", ".feather", ".ipc")):
        return "arrow"
    return "jsonl"


def _count_lines(stream: IO[bytes], copy_to: IO[bytes] | None) -> int:
    newlines = 0
    last = b"\n"
    while block := stream.read(_READ_BLOCK):
        newlines += block.count(b"\n")
        last = block[-1:]
        if copy_to is not None:
            copy_to.write(block)
    return newlines + (0 if last == b"\n" else 1)


def open_input(source: str, fmt: InputFormat | None, *, stdin: IO[bytes] | None = None) -> InputFile:
    """Count the input's lines; standard input (``-``) is first spooled to a temporary file.

    Spooling gives stdin a known size for the progress bar.
    """
    if source == STDIN:
        stream = stdin if stdin is not None else sys.stdin.buffer
        try:
            spool = tempfile.NamedTemporaryFile(prefix="billing-events-", suffix=".spool", delete=False)  # noqa: SIM115
        except OSError as exc:
            raise InputError(
                f"cannot spool standard input to a temporary file: {exc.strerror or exc}"
            ) from exc
        try:
            with spool:
                lines = _count_lines(stream, spool)
        except BaseException as exc:
            # A read error, a full temporary directory, Ctrl-C: no copy of the events is left behind.
            Path(spool.name).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise InputError(
                    f"cannot read standard input into {spool.name}: {exc.strerror or exc}"
                ) from exc
            raise
        spooled = InputFile(Path(spool.name), "<stdin>", lines, fmt or "jsonl", spooled=True)
        if spooled.format in COLUMNAR:
            spooled = _with_row_count(spooled)
        return spooled
    path = Path(source)
    fmt = fmt or guess_format(source)
    if fmt in COLUMNAR:
        return _with_row_count(InputFile(path, source, None, fmt, spooled=False))
    try:
        with path.open("rb") as stream:
            lines = _count_lines(stream, None)
    except OSError as exc:
        raise InputError(f"cannot read {source}: {exc.strerror or exc}") from exc
    return InputFile(path, source, lines - (1 if fmt == "csv" else 0), fmt, spooled=False)


def _with_row_count(source: InputFile) -> InputFile:
    try:
        _, rows = _columnar.open_columnar(source.path, source.format)
    except _columnar.ColumnarError as exc:
        source.discard()
        raise InputError(str(exc)) from exc
    return InputFile(source.path, source.label, rows, source.format, source.spooled)


def _lines(path: Path, max_line_bytes: int) -> Iterator[tuple[int, bytes | int]]:
    """``(number, line)`` for each physical line, or ``(number, size)`` for one above ``max_line_bytes``."""
    with path.open("rb") as stream:
        yield from bounded_lines(stream, max_line_bytes)


def _too_long(size: int, limit: int) -> str:
    return f"line is {size:,} bytes; one event must fit in a request of at most {limit:,} bytes"


def _first(value: object, wanted: Callable[[object], bool], path: str = "") -> tuple[str, object] | None:
    """The path and value of the first number in a parsed JSON value that ``wanted`` picks, if any.

    The value comes with its path: a name with a dot in it (``"a.b"``) cannot be found again from the path.
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (path, value) if wanted(value) else None
    if isinstance(value, dict):
        items = ((f"{path}.{name}" if path else str(name), item) for name, item in value.items())
    elif isinstance(value, list):
        items = ((f"{path}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    return next((found for field, item in items if (found := _first(item, wanted, field)) is not None), None)


def _beyond_64(number: object) -> bool:
    """An integer JSON tools would round."""
    return isinstance(number, int) and not _INT_RANGE[0] <= number <= _INT_RANGE[1]


def _non_finite(number: object) -> bool:
    """A number no double holds (1e400 reads as infinity)."""
    return isinstance(number, float) and not math.isfinite(number)


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _beyond_doubles(raw: bytes) -> str | None:
    """For a line orjson refuses: the field whose number no double holds, named, when that is why
    (an integer of 309 digits or more is one too: it is named as any integer beyond 64 bits)."""
    try:
        found = _first(
            json.loads(raw, parse_constant=_no_constant), lambda n: _beyond_64(n) or _non_finite(n)
        )
    except (ValueError, RecursionError):
        return None
    if found is None:
        return None
    field, number = found
    if isinstance(number, int):
        return _beyond_64_bits(field, number)
    return f"{clip(field, 80)}: a number beyond the range of a double (about 1.8e308); send it as a string"


def _beyond_64_bits(field: str, number: object) -> str:
    return (
        f"{clip(field, 80)}: integer {clip(str(number), 40)} does not fit in 64 bits"
        " (it would lose digits); send it as a string"
    )


def _parse_json_line(raw: bytes) -> tuple[object, str | None]:
    """The line's value, or a problem; integers that JSON tools would round are refused by name."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "infinity" in str(exc):
            beyond = _beyond_doubles(raw)
            if beyond is not None:
                return None, beyond
        return None, f"not valid JSON: {clip(str(exc))}"
    if not _LONG_DIGITS.search(raw):
        return value, None
    try:
        exact = json.loads(raw)
        found = _first(exact, _beyond_64)
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        return None, "an integer has too many digits to be read exactly; send it as a string"
    except RecursionError:
        return None, "nested too deeply to be checked for integers beyond 64 bits"
    if found is None:
        return value, None
    return None, _beyond_64_bits(*found)


def read_jsonl(path: Path, max_line_bytes: int) -> Iterator[Record]:
    """One record per non-blank line; a line that is not a JSON object is a problem record."""
    for number, raw in _lines(path, max_line_bytes):
        if isinstance(raw, int):
            yield Record(number, None, _too_long(raw, max_line_bytes))
            continue
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if not raw.strip():
            continue
        value, problem = _parse_json_line(raw)
        if problem is not None:
            yield Record(number, None, problem)
        elif not isinstance(value, dict):
            yield Record(number, None, "not a JSON object")
        else:
            yield Record(number, value)


RowMapper = Callable[[dict[str, str]], dict[str, object]]
HeaderCheck = Callable[[list[str]], list[str]]


def _decode(raw: bytes) -> tuple[str | None, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at column {exc.start + 1}"


def _read_row(text: str) -> list[list[str]]:
    """The row of one line. A cell may be as long as its line, which is bounded already; the csv module's
    own limit (128 KiB by default, far below a request) is process-wide, so it is raised only while a
    line longer than it is read, and put back."""
    limit = csv.field_size_limit()
    if len(text) <= limit:
        return list(csv.reader([text], strict=True, skipinitialspace=True))
    csv.field_size_limit(len(text))
    try:
        return list(csv.reader([text], strict=True, skipinitialspace=True))
    finally:
        csv.field_size_limit(limit)


def _parse_row(text: str) -> tuple[list[str] | None, str | None]:
    try:
        # Spaces after a comma are skipped, in the cells as in the header: a file written with ", " would
        # otherwise send " api_calls", a code that bills nothing.
        rows = _read_row(text)
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            return None, "unterminated quote (a quoted cell must end on its own line)"
        return None, f"unreadable CSV row: {clip(str(exc))}"
    return (rows[0] if rows else []), None


def read_csv(
    path: Path, check_header: HeaderCheck, to_event: RowMapper, max_line_bytes: int
) -> Iterator[Record]:
    """One record per CSV line, mapped to an event by ``to_event``.

    Each row is one physical line: a quote left open is a problem of its own
    line and never swallows the rows after it. The header is checked before
    any row is read: unknown or missing columns, or an unreadable header, make
    the whole file unusable (``InputError``) rather than every row bad.
    """
    lines = _lines(path, max_line_bytes)
    header: list[str] | None = None
    for number, raw in lines:
        if isinstance(raw, int):
            if header is None:
                raise InputError(f"line 1: CSV header: {_too_long(raw, max_line_bytes)}")
            yield Record(number, None, _too_long(raw, max_line_bytes))
            continue
        if header is None and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        text, problem = _decode(raw.rstrip(b"\r\n"))
        row = None
        if text is not None:
            if header is not None and not text.strip():
                continue
            row, problem = _parse_row(text)
        if header is None:
            if row is None:
                raise InputError(f"line {number}: unreadable CSV header: {problem}")
            header = [name.strip() for name in row]
            header_problems = check_header(header)
            if header_problems:
                raise InputError(clip("CSV header: " + "; ".join(header_problems), 1000))
            continue
        if row is None:
            yield Record(number, None, problem)
        elif len(row) != len(header):
            yield Record(number, None, f"expected {len(header)} columns, got {len(row)}")
        else:
            yield Record(number, to_event(dict(zip(header, row, strict=True))))
    if header is None:
        raise InputError("line 1: CSV header: the file is empty")


def read_columnar(path: Path, fmt: str, provider: str) -> Iterator[Record]:
    """One record per Parquet or Arrow row (numbered from 1), read one record batch at a time.

    The columns are checked before any row is read, as a CSV header is.
    """
    try:
        columns, _ = _columnar.open_columnar(path, fmt)
        problems = _columnar.column_problems(provider, columns)
        if problems:
            raise InputError(clip(f"{fmt} columns: " + "; ".join(problems), 1000))
        number = 0
        for rows in _columnar.batches(path, fmt):
            for row in rows:
                number += 1
                event, problem = _columnar.row_to_event(provider, row)
                yield Record(number, event, problem)
    except _columnar.ColumnarError as exc:
        raise InputError(str(exc)) from exc
