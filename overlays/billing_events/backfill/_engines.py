"""Rows from the engines' frames, with Python values and None for nulls."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

from .partition import COUNT_COLUMNS, IDENTIFY_GROUP, Rereadable


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
            rows: list[dict[str, Any]] = batch.to_pylist()
            yield from rows


def pandas_rows(frame: Any, extra: str) -> Iterable[dict[str, Any]]:
    """A pandas partition's rows; through Arrow, so NaN and NaT become None and numbers plain Python."""
    pa = _pyarrow(extra)
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowException, OverflowError):
        # An object column Arrow cannot type (text and numbers mixed, an integer beyond 64 bits) is
        # valid data, or one row's problem: the other columns still go through Arrow.
        return _rows_by_column(frame, pa)
    return ArrowRows(table.to_batches(max_chunksize=IDENTIFY_GROUP))


def _rows_by_column(frame: Any, pa: Any) -> list[dict[str, Any]]:
    columns: dict[str, list[Any]] = {}
    for name in frame.columns:
        try:
            column = pa.Table.from_pandas(frame[[name]], preserve_index=False).column(0).to_pylist()
        except (pa.ArrowException, OverflowError):
            column = [_plain(value) for value in frame[name].tolist()]
        columns[str(name)] = column
    return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _plain(value: Any) -> Any:
    """A value of an object column as Arrow would give it: None for NaN, NaT and NA, numpy scalars as Python."""
    import numpy
    import pandas

    if value is None or value is pandas.NaT or value is pandas.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, numpy.generic):
        return _plain(value.item())  # a numpy NaN is a float NaN: None
    if isinstance(value, numpy.ndarray):
        return value.tolist()
    return value


def summary_schema(extra: str) -> Any:
    pa = _pyarrow(extra)
    counts = [(column, pa.int64()) for column in COUNT_COLUMNS]
    return pa.schema([("partition", pa.string()), *counts, ("problem", pa.string())])
