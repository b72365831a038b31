"""Backfills on Spark: ``backfill(df, Backfill(...))`` for a PySpark DataFrame, through ``mapInArrow``.

Each partition's Arrow batches go through ``send_partition`` on the executor's
Python worker. A failed task is retried by Spark (``spark.task.maxFailures``)
and resumes from its checkpoint, whatever partition id it is given.
Without ``key_column``, a shuffle first brings identical rows into one
partition (``repartition`` on a hash of the whole row), so their occurrence
numbers count every copy in the frame. Needs ``pip install 'billing-events[spark]'``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ._engines import ArrowRows, summary_schema
from .partition import COUNT_COLUMNS, SUMMARY_COLUMNS, Backfill, check_columns, send_partition, total
from .result import BackfillResult

EXTRA = "spark"
SUMMARY_DDL = ", ".join(
    ["partition string", *(f"{column} long" for column in COUNT_COLUMNS), "problem string"]
)


def _copies_together(frame: Any, backfill: Backfill) -> Any:
    """``frame`` with every copy of a row in one partition, as many partitions as before."""
    if backfill.key_column is not None:
        return frame  # each row has its own key: no occurrence to count, no shuffle
    from pyspark.sql import functions

    columns = [_hashable(field, functions) for field in frame.schema.fields]
    # Hash partitioning depends on the values only: a retried or re-run task gets the same rows.
    return frame.repartition(frame.rdd.getNumPartitions(), functions.xxhash64(*columns))


def _hashable(field: Any, functions: Any) -> Any:
    """A column's value as hashed for placing its row: equal for values that make one event.

    Spark refuses to hash a map, and a map's JSON lists its entries in the order they were written,
    though ``{"a": 1, "b": 2}`` and ``{"b": 2, "a": 1}`` make one event: a map is hashed by its
    entries' JSON texts, sorted. An empty map or list makes the same event as a null one.
    """
    from pyspark.sql.types import ArrayType, MapType, StructType

    column = functions.col(field.name)
    if isinstance(field.dataType, MapType):
        entries = functions.transform(functions.map_entries(column), lambda entry: functions.to_json(entry))
        return functions.when(functions.size(column) > 0, functions.array_sort(entries))
    if isinstance(field.dataType, ArrayType):
        return functions.when(functions.size(column) > 0, functions.to_json(column))
    if isinstance(field.dataType, StructType):
        return functions.to_json(column)
    return column


def summaries(frame: Any, backfill: Backfill) -> Any:
    """A lazy Spark DataFrame of one summary row per partition: write it, or collect it."""
    prepared = backfill.prepare()
    names = list(frame.columns)
    check_columns(prepared, names)

    def send(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow

        rows = ArrowRows(batch.rename_columns(names) for batch in batches)
        summary = send_partition(rows, prepared)
        yield pyarrow.RecordBatch.from_pylist([summary], schema=summary_schema(EXTRA))

    # Spark resolves "prop.n" as a field of "prop": columns go in under positional names, and get theirs back.
    positional = frame.toDF(*(f"_{index}" for index in range(len(names))))
    return _copies_together(positional, prepared).mapInArrow(send, SUMMARY_DDL)


def backfill(frame: Any, backfill: Backfill) -> BackfillResult:
    """Send every partition of ``frame``; the summary of each partition (pandas) and the total."""
    import pandas

    # collect(), not toPandas(): toPandas may run a failed job a second time without Arrow.
    rows = [row.asDict() for row in summaries(frame, backfill).collect()]
    partitions = pandas.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    return BackfillResult(partitions, total(rows))
