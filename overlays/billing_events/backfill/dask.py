"""Backfills on Dask: ``backfill(frame, Backfill(...))`` for a dask DataFrame or Bag.

Each partition goes through ``send_partition`` as one task. A task lost with
its worker is run again by the scheduler and resumes from its checkpoint.
Without ``key_column``, a shuffle first brings identical rows into one
partition, so their occurrence numbers count every copy in the frame: rows are
placed by a digest of the event each makes, whatever their spelling. Needs ``pip install 'billing-events[dask]'``.
"""

from __future__ import annotations

import functools
from typing import Any

from ..errors import ConfigurationError
from ._checkpoint import NAMED_ATTRIBUTES, PLACED_BY_EVENTS
from ._engines import HASH_COLUMN, pandas_rows, row_hash
from .partition import (
    COUNT_COLUMNS,
    SUMMARY_COLUMNS,
    Backfill,
    check_columns,
    columns_problems,
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


def _send_frame(frame: Any, backfill: Backfill, hash_column: str | None = None) -> Any:
    if hash_column is not None:
        frame = frame.drop(columns=[hash_column])
    return _summary_frame([send_partition(pandas_rows(frame, EXTRA), backfill)])


def _send_bag(rows: Any, backfill: Backfill) -> list[dict[str, Any]]:
    return [send_partition(rows, backfill)]


def _event_hashes(part: Any, backfill: Backfill, hash_column: str) -> Any:
    pd = _pandas()
    hashes = [row_hash(backfill, row) for row in pandas_rows(part, EXTRA)]
    return part.assign(**{hash_column: pd.Series(hashes, index=part.index, dtype="uint64")})


def _copies_together(
    frame: Any, backfill: Backfill, shuffle_method: str, bag: bool
) -> tuple[Any, str | None]:
    """``frame`` with every copy of an event in one partition, and the column of digests it carries."""
    if backfill.key_column is not None:
        return frame, None  # each row has its own key: no occurrence to count, no shuffle
    if bag:
        grouped = frame.groupby(
            functools.partial(row_hash, backfill), npartitions=frame.npartitions, shuffle=shuffle_method
        )
        return grouped.pluck(1).flatten(), None
    if backfill.layout < PLACED_BY_EVENTS and all(str(dtype) != "object" for dtype in frame.dtypes):
        # A job begun when rows were placed by their values keeps that placement, so a re-run finds its
        # partitions' checkpoints. (A column of objects could not be placed so: no such job sent a row.)
        shuffled = frame.shuffle(
            on=list(frame.columns), npartitions=frame.npartitions, shuffle_method=shuffle_method
        )
        return shuffled, None
    # Placed by each row's event, never by the row's values: rows spelled apart can make one event
    # (times a few microseconds apart that Lago's milliseconds make one, a unit beside a null Togai
    # attribute, a map's entries in either order), and such copies must meet to be numbered apart.
    pd = _pandas()
    hash_column = HASH_COLUMN
    while hash_column in frame.columns:
        hash_column += "_"  # never one of the frame's own
    meta = frame._meta.assign(**{hash_column: pd.Series([], dtype="uint64")})
    hashed = frame.map_partitions(_event_hashes, backfill, hash_column, meta=meta)
    shuffled = hashed.shuffle(on=hash_column, npartitions=frame.npartitions, shuffle_method=shuffle_method)
    return shuffled, hash_column


NESTED = {"togai": ("attributes", "dimensions"), "lago": ("properties",)}


def _index_as_column(frame: Any, backfill: Backfill) -> Any:
    """``frame`` with its index as a column when the index is named as a column the layout takes.

    A frame written with ``set_index("timestamp")`` reads back with its times as the index: dropped,
    every row would go out with the job's stamp. Any other index (unnamed, or named as nothing an
    event holds) is not part of the events, as before; nor is any index in a job begun before layout 5.
    """
    name = frame.index.name
    if backfill.layout < NAMED_ATTRIBUTES or name is None or name in frame.columns:
        return frame  # a job begun before this layout sent such a frame without its index: it keeps its keys
    if columns_problems(backfill, [*frame.columns, name]):
        return frame
    return frame.reset_index()


def _refuse_text_for_nested(frame: Any, provider: str) -> None:
    """A nested column typed as text would make every row that has a value ``rejected``: say why now."""
    pd = _pandas()
    for name in NESTED[provider]:
        # A column of Python objects (dicts, lists) is read row by row; text typed as such is not.
        dtype = frame.dtypes[name] if name in frame.columns else None
        if dtype is not None and str(dtype) != "object" and pd.api.types.is_string_dtype(dtype):
            raise ConfigurationError(
                f"backfill columns: {name!r} holds text where a struct or a map is expected; Dask's"
                " from_pandas turns a column of dicts into text unless"
                " dask.config.set({'dataframe.convert-string': False})"
            )


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
        frame = _index_as_column(frame, prepared)
        check_columns(prepared, frame.columns)
        _refuse_text_for_nested(frame, prepared.provider)
    frame, hash_column = _copies_together(frame, prepared, shuffle_method, is_bag)
    if is_bag:
        summaries = list(frame.map_partitions(_send_bag, prepared).compute(**compute_options))
        partitions = _summary_frame(summaries)
    else:
        meta = _summary_frame([empty_summary()]).iloc[:0]
        partitions = frame.map_partitions(_send_frame, prepared, hash_column, meta=meta).compute(
            **compute_options
        )
        partitions = partitions.reset_index(drop=True)
    return BackfillResult(partitions, total(partitions.to_dict("records")))
