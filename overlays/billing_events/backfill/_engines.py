"""Rows from the engines' frames, with Python values and None for nulls."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from ..cli._columnar import batch_rows
from ._checkpoint import WHOLE_FLOATS
from .partition import (
    COUNT_COLUMNS,
    IDENTIFY_GROUP,
    Backfill,
    Rereadable,
    _row_event,
    placing_digest,
    row_digest,
)

# The column of event hashes that places a frame's rows before the shuffle; dropped before sending.
HASH_COLUMN = "__billing_events_copies__"


def _pyarrow(extra: str) -> Any:
    try:
        import pyarrow
    except ImportError as exc:
        raise ImportError(f"backfills need pyarrow: pip install 'billing-events[{extra}]'") from exc
    return pyarrow


class ArrowRows(Rereadable):
    """The rows of Arrow record batches as dicts, a batch at a time, as often as they are read.

    ``send_partition`` reads a partition twice (its name, then its events): the batches stay in
    Arrow's memory, and each row's dict lives only while it is read.
    """

    def __init__(self, batches: Iterable[Any]) -> None:
        self._batches = list(batches)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self._batches:
            # As the CLI reads a record batch: a value Python cannot hold (a date past year 9999) is its
            # row's problem, never the partition's.
            yield from batch_rows(batch)


def pandas_rows(frame: Any, extra: str) -> Iterable[dict[str, Any]]:
    """A pandas partition's rows, with Python values and None for NaN, NaT and NA.

    Columns of plain types go through Arrow. A column of Python objects is read value by value: Arrow
    would type a map's (key, value) pairs as two-item lists, cannot type text and numbers mixed (valid
    Lago properties), and stops at an integer beyond 64 bits or a lone surrogate, which are one row's
    problem, never the partition's.
    """
    pa = _pyarrow(extra)
    if not any(str(dtype) == "object" for dtype in frame.dtypes):
        try:
            table = pa.Table.from_pandas(frame, preserve_index=False)
        except (pa.ArrowException, OverflowError, UnicodeError):
            return _rows_by_column(frame, pa)
        return ArrowRows(table.to_batches(max_chunksize=IDENTIFY_GROUP))
    return _rows_by_column(frame, pa)


def _rows_by_column(frame: Any, pa: Any) -> list[dict[str, Any]]:
    plain = _plain_values()
    columns: dict[str, list[Any]] = {}
    for name, dtype in frame.dtypes.items():
        column: list[Any] | None = None
        if str(dtype) != "object":
            try:
                column = pa.Table.from_pandas(frame[[name]], preserve_index=False).column(0).to_pylist()
            except (pa.ArrowException, OverflowError, UnicodeError):
                column = None
        if column is None:
            column = [plain(value) for value in frame[name].tolist()]
        columns[str(name)] = column
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _plain_values() -> Any:
    """A function that makes a value of an object column what Arrow would give, nested values too.

    None for NaN, NaT and NA; numpy's scalars and arrays (a list read by ``read_parquet``) as Python
    numbers and lists; a map's pairs stay tuples, which the columnar reader takes for a map.
    """
    import numpy
    import pandas

    def plain(value: Any) -> Any:
        kind = type(value)
        if kind is str or kind is int or kind is bool:
            return value
        if value is None or value is pandas.NaT or value is pandas.NA:
            return None
        if kind is float:
            return None if math.isnan(value) else value
        if isinstance(value, numpy.generic):
            return plain(value.item())  # a numpy NaN is a float NaN: None
        if isinstance(value, numpy.ndarray):
            return [plain(item) for item in value.tolist()]
        if kind is dict:
            return {name: plain(item) for name, item in value.items()}
        if kind is list:
            return [plain(item) for item in value]
        if kind is tuple:
            return tuple(plain(item) for item in value)
        if isinstance(value, float) and math.isnan(value):
            return None
        return value

    return plain


def summary_schema(extra: str) -> Any:
    pa = _pyarrow(extra)
    counts = [(column, pa.int64()) for column in COUNT_COLUMNS]
    return pa.schema([("partition", pa.string()), *counts, ("problem", pa.string())])


def row_hash(backfill: Backfill, row: Any) -> int:
    """The same number for rows that make the same event, in any process (Python's hash of a str is salted).

    Taken from the event, not the row: a null spelled out or left away, or Togai's 3 and "3", make one
    event, whose copies must meet in one partition to be numbered 1, 2, ... (else they share a key).
    """
    try:
        event, _ = _row_event(row, backfill)
        if event is not None:
            return int.from_bytes(placing_digest(event, backfill)[:8], "big")
    except MemoryError:
        raise
    except Exception:
        # An event JSON cannot write (nested too deep, a lone surrogate): its row is rejected when its
        # partition is sent, so any number that is the same on every run will do.
        pass
    if backfill.layout >= WHOLE_FLOATS:
        # The row's portable form, the one that names partitions: the same in every process (a set's
        # items in the order of their JSON, an object by its type, never by its address).
        return int.from_bytes(row_digest(row)[:8], "big")
    # A job begun before keeps placing such a row by its text (a set's follows the hash seed).
    try:
        data = orjson.dumps(row, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    except (TypeError, ValueError):
        # An integer beyond 64 bits (whose text may be too long to write): hashed by the field names
        # alone, which identical rows share too.
        data = repr(sorted(map(str, row)) if isinstance(row, dict) else type(row).__name__).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")
