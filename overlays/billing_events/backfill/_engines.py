"""Rows from the engines' frames, with Python values and None for nulls."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from .partition import COUNT_COLUMNS


def _pyarrow(extra: str) -> Any:
    try:
        import pyarrow
    except ImportError as exc:
        raise ImportError(f"backfills need pyarrow: pip install 'billing-events[{extra}]'") from exc
    return pyarrow


def pandas_rows(frame: Any, extra: str) -> list[dict[str, Any]]:
    """A pandas partition's rows; through Arrow, so NaN and NaT become None and numbers plain Python."""
    pa = _pyarrow(extra)
    rows: list[dict[str, Any]] = pa.Table.from_pandas(frame, preserve_index=False).to_pylist()
    return rows


def batch_rows(batches: Iterable[Any]) -> Iterator[dict[str, Any]]:
    for batch in batches:
        yield from batch.to_pylist()


def summary_schema(extra: str) -> Any:
    pa = _pyarrow(extra)
    counts = [(column, pa.int64()) for column in COUNT_COLUMNS]
    return pa.schema([("partition", pa.string()), *counts, ("problem", pa.string())])
