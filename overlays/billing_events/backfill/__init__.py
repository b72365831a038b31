"""Backfills on Dask and Spark: one engine-neutral core (``partition``) and thin adapters.

``billing_events.backfill.dask`` and ``billing_events.backfill.spark`` import
their engines; this package imports neither.
"""

from __future__ import annotations

from ._checkpoint import CheckpointError
from .partition import SUMMARY_COLUMNS, Backfill, send_partition, total
from .result import BackfillResult

__all__ = ["SUMMARY_COLUMNS", "Backfill", "BackfillResult", "CheckpointError", "send_partition", "total"]
