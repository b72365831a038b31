"""Backfills on Dask: ``backfill(frame, Backfill(...))`` for a dask DataFrame or Bag.

Each partition goes through ``send_partition`` as one task. A task lost with
its worker is run again by the scheduler and resumes from its checkpoint.
Without ``key_column``, a shuffle first brings identical rows into one
partition, so their occurrence numbers count every copy in the frame. Columns of
plain types are hashed as Dask hashes them; a frame with a column of Python objects
(structs and maps read from Parquet, mixed values) is hashed by each row's event,
as a Bag is. Needs ``pip install 'billing-events[dask]'``.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import orjson

from .._keys import content_digest
from ._engines import pandas_rows
from .partition import (
    COUNT_COLUMNS,
    SUMMARY_COLUMNS,
    Backfill,
    _row_event,
    check_columns,
    empty_summary,
    send_partition,
    total,
)
from .result import BackfillResult

EXTRA = "dask"


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(f"Dask backfills need pandas: pip install 'billing-events[{EXTRA}]'") from exc
    return pandas


def _summary_frame(summaries: list[dict[str, Any]]) -> Any:
    pd = _pandas()
    frame = pd.DataFrame(summaries, columns=list(SUMMARY_COLUMNS))
    return frame.astype({column: "int64" for column in COUNT_COLUMNS} | {"problem": "object"})


# The column of event hashes that places a frame's rows (see ``_copies_together``); dropped before sending.
HASH_COLUMN = "__billing_events_copies__"


def _send_frame(frame: Any, backfill: Backfill, hashed: bool = False) -> Any:
    if hashed:
        frame = frame.drop(columns=[HASH_COLUMN])
    return _summary_frame([send_partition(pandas_rows(frame, EXTRA), backfill)])


def _send_bag(rows: Any, backfill: Backfill) -> list[dict[str, Any]]:
    return [send_partition(rows, backfill)]


def _row_hash(backfill: Backfill, row: Any) -> int:
    """The same number for rows that make the same event, in any process (Python's hash of a str is salted).

    Taken from the event, not the row: a null spelled out or left away, or Togai's 3 and "3", make one
    event, whose copies must meet in one partition to be numbered 1, 2, ... (else they share a key).
    """
    event, _ = _row_event(row, backfill)
    if event is not None:
        return int.from_bytes(content_digest(event)[:8], "big")
    try:
        data = orjson.dumps(row, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    except TypeError:
        # An integer beyond 64 bits (whose text may be too long to write): hashed by the field names
        # alone, which identical rows share too.
        data = repr(sorted(map(str, row)) if isinstance(row, dict) else type(row).__name__).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _plain_dtype(dtype: Any) -> bool:
    """Whether Dask hashes this column's values as the event reads them: one type, no nesting.

    A column of Python objects may hold dicts and lists (structs and maps read from Parquet), which
    pandas refuses to hash, or values spelled two ways that make one event (``{"a": 1, "b": 2}``
    and ``{"b": 2, "a": 1}``, 3 and "3"), which it hashes apart.
    """
    pd = _pandas()
    if isinstance(dtype, pd.StringDtype):
        return True
    if isinstance(dtype, pd.ArrowDtype):
        import pyarrow

        arrow = dtype.pyarrow_dtype
        return bool(pyarrow.types.is_primitive(arrow) or pyarrow.types.is_string(arrow))
    return getattr(dtype, "kind", "O") in "biufmM"  # numpy's numbers, booleans and times; not objects


def _event_hashes(part: Any, backfill: Backfill) -> Any:
    pd = _pandas()
    hashes = [_row_hash(backfill, row) for row in pandas_rows(part, EXTRA)]
    return part.assign(**{HASH_COLUMN: pd.Series(hashes, index=part.index, dtype="uint64")})


def _copies_together(frame: Any, backfill: Backfill, shuffle_method: str, bag: bool) -> tuple[Any, bool]:
    """``frame`` with every copy of a row in one partition, and whether it carries ``HASH_COLUMN``."""
    if backfill.key_column is not None:
        return frame, False  # each row has its own key: no occurrence to count, no shuffle
    if bag:
        grouped = frame.groupby(
            functools.partial(_row_hash, backfill), npartitions=frame.npartitions, shuffle=shuffle_method
        )
        return grouped.pluck(1).flatten(), False
    if all(map(_plain_dtype, frame.dtypes)):
        # Dask hashes the values of all columns: identical rows land in the same partition, on every run.
        shuffled = frame.shuffle(
            on=list(frame.columns), npartitions=frame.npartitions, shuffle_method=shuffle_method
        )
        return shuffled, False
    pd = _pandas()
    meta = frame._meta.assign(**{HASH_COLUMN: pd.Series([], dtype="uint64")})
    hashed = frame.map_partitions(_event_hashes, backfill, meta=meta)
    shuffled = hashed.shuffle(on=HASH_COLUMN, npartitions=frame.npartitions, shuffle_method=shuffle_method)
    return shuffled, True


def backfill(
    frame: Any, backfill: Backfill, *, shuffle_method: str = "tasks", **compute_options: Any
) -> BackfillResult:
    """Send every partition of ``frame`` (a ``dask.dataframe.DataFrame``, or a ``dask.bag.Bag`` of dicts).

    Returns the summary of each partition and the total. Without
    ``backfill.key_column``, the frame is shuffled first (``shuffle_method``:
    ``"tasks"``, plain tasks that a lost worker's replacement recomputes, or
    ``"p2p"``) so that identical rows are numbered across the whole frame.
    ``compute_options`` go to ``compute()`` (e.g. ``retries=2``).
    """
    prepared = backfill.prepare()
    try:
        import dask.bag
    except ImportError as exc:
        raise ImportError(f"Dask backfills need dask: pip install 'billing-events[{EXTRA}]'") from exc
    is_bag = isinstance(frame, dask.bag.Bag)
    if not is_bag:
        check_columns(prepared, frame.columns)
    frame, hashed = _copies_together(frame, prepared, shuffle_method, is_bag)
    if is_bag:
        summaries = list(frame.map_partitions(_send_bag, prepared).compute(**compute_options))
        partitions = _summary_frame(summaries)
    else:
        meta = _summary_frame([empty_summary()]).iloc[:0]
        partitions = frame.map_partitions(_send_frame, prepared, hashed, meta=meta).compute(**compute_options)
        partitions = partitions.reset_index(drop=True)
    return BackfillResult(partitions, total(partitions.to_dict("records")))
