"""Backfills on Dask: ``backfill(frame, Backfill(...))`` for a dask DataFrame or Bag.

Each partition goes through ``send_partition`` as one task. A task lost with
its worker is run again by the scheduler and resumes from its checkpoint.
Needs ``pip install 'billing-events[dask]'``.
"""

from __future__ import annotations

from typing import Any

from ._engines import pandas_rows
from .partition import COUNT_COLUMNS, SUMMARY_COLUMNS, Backfill, empty_summary, send_partition, total
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


def _send_frame(frame: Any, backfill: Backfill) -> Any:
    return _summary_frame([send_partition(pandas_rows(frame, EXTRA), backfill)])


def _send_bag(rows: Any, backfill: Backfill) -> list[dict[str, Any]]:
    return [send_partition(rows, backfill)]


def backfill(frame: Any, backfill: Backfill, **compute_options: Any) -> BackfillResult:
    """Send every partition of ``frame`` (a ``dask.dataframe.DataFrame``, or a ``dask.bag.Bag`` of dicts).

    Returns the summary of each partition and the total. ``compute_options``
    go to ``compute()`` (e.g. ``retries=2``).
    """
    prepared = backfill.prepare()
    try:
        import dask.bag
    except ImportError as exc:
        raise ImportError(f"Dask backfills need dask: pip install 'billing-events[{EXTRA}]'") from exc
    if isinstance(frame, dask.bag.Bag):
        summaries = list(frame.map_partitions(_send_bag, prepared).compute(**compute_options))
        partitions = _summary_frame(summaries)
    else:
        meta = _summary_frame([empty_summary()]).iloc[:0]
        partitions = frame.map_partitions(_send_frame, prepared, meta=meta).compute(**compute_options)
        partitions = partitions.reset_index(drop=True)
    return BackfillResult(partitions, total(partitions.to_dict("records")))
