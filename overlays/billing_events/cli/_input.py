"""Reading an input file into numbered records, one per event line or CSV row.

A record either carries an event (a dict) or says why its line could not
become one. Line numbers are 1-based and count physical lines, so a CSV
header is line 1 and its first row line 2.
"""

from __future__ import annotations

import csv
import hashlib
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Literal

import orjson
from attrs import frozen

InputFormat = Literal["jsonl", "csv"]
FORMATS: tuple[InputFormat, ...] = ("jsonl", "csv")
STDIN = "-"

_READ_BLOCK = 1 << 20


class InputError(Exception):
    """The input cannot be read at all (as opposed to one bad line)."""


@frozen
class Record:
    """One line (or CSV row) of the input."""

    line: int
    event: dict[str, object] | None
    problem: str | None = None


@frozen
class InputFile:
    """A readable copy of the input with the digest its idempotency keys derive from."""

    path: Path
    label: str
    sha256: str
    line_count: int
    format: InputFormat
    spooled: bool

    def discard(self) -> None:
        """Remove the spooled copy of standard input, if any."""
        if self.spooled:
            self.path.unlink(missing_ok=True)


def guess_format(name: str) -> InputFormat:
    """The format named by the file's extension; JSONL when it names none."""
    return "csv" if name.lower().endswith((".csv", ".csv.txt")) else "jsonl"


def _digest_and_count(stream: IO[bytes], copy_to: IO[bytes] | None) -> tuple[str, int]:
    digest = hashlib.sha256()
    newlines = 0
    last = b"\n"
    while block := stream.read(_READ_BLOCK):
        digest.update(block)
        newlines += block.count(b"\n")
        last = block[-1:]
        if copy_to is not None:
            copy_to.write(block)
    return digest.hexdigest(), newlines + (0 if last == b"\n" else 1)


def open_input(source: str, fmt: InputFormat | None, *, stdin: IO[bytes] | None = None) -> InputFile:
    """Digest the input; standard input (``-``) is first spooled to a temporary file.

    Spooling gives stdin the same guarantees as a file: a known size for the
    progress bar and keys that are the same when the same bytes are piped again.
    """
    if source == STDIN:
        stream = stdin if stdin is not None else sys.stdin.buffer
        spool = tempfile.NamedTemporaryFile(prefix="billing-events-", suffix=".spool", delete=False)  # noqa: SIM115
        with spool:
            sha256, lines = _digest_and_count(stream, spool)
        return InputFile(Path(spool.name), "<stdin>", sha256, lines, fmt or "jsonl", spooled=True)
    path = Path(source)
    try:
        with path.open("rb") as stream:
            sha256, lines = _digest_and_count(stream, None)
    except OSError as exc:
        raise InputError(f"cannot read {source}: {exc.strerror or exc}") from exc
    return InputFile(path, source, sha256, lines, fmt or guess_format(source), spooled=False)


def read_jsonl(path: Path) -> Iterator[Record]:
    """One record per non-blank line; a line that is not a JSON object is a problem record."""
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            if not raw.strip():
                continue
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                yield Record(number, None, f"not valid JSON: {exc}")
                continue
            if not isinstance(value, dict):
                yield Record(number, None, "not a JSON object")
                continue
            yield Record(number, value)


RowMapper = Callable[[dict[str, str]], dict[str, object]]
HeaderCheck = Callable[[list[str]], list[str]]


def read_csv(path: Path, check_header: HeaderCheck, to_event: RowMapper) -> Iterator[Record]:
    """One record per CSV row, mapped to an event by ``to_event``.

    The header is checked before any row is read: unknown or missing columns
    make the whole file unusable (``InputError``) rather than every row bad.
    """
    with path.open(encoding="utf-8-sig", newline="") as stream:
        reader = csv.reader(stream, strict=True)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InputError(f"line 1: unreadable CSV header: {exc}") from exc
        header = [name.strip() for name in header]
        header_problems = check_header(header)
        if header_problems:
            raise InputError("CSV header: " + "; ".join(header_problems))
        line_after = reader.line_num + 1
        while True:
            start = line_after
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                line_after = reader.line_num + 1
                yield Record(start, None, f"unreadable CSV row: {exc}")
                continue
            line_after = reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                yield Record(start, None, f"expected {len(header)} columns, got {len(row)}")
                continue
            yield Record(start, to_event(dict(zip(header, row, strict=True))))
