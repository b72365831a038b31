"""Backfills on Spark: ``backfill(df, Backfill(...))`` for a PySpark DataFrame, through ``mapInArrow``.

Each partition's Arrow batches go through ``send_partition`` on the executor's
Python worker. A failed task is retried by Spark (``spark.task.maxFailures``)
and resumes from its checkpoint, whatever partition id it is given.
Without ``key_column``, a shuffle first brings identical rows into one
partition (``repartition`` on a digest of the event each row makes), so their
occurrence numbers count every copy in the frame. Needs ``pip install 'billing-events[spark]'``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ._checkpoint import PLACED_BY_EVENTS
from ._engines import HASH_COLUMN, ArrowRows, row_hash, summary_schema
from .partition import COUNT_COLUMNS, SUMMARY_COLUMNS, Backfill, check_columns, send_partition, total
from .result import BackfillResult

EXTRA = "spark"
SUMMARY_DDL = ", ".join(
    ["partition string", *(f"{column} long" for column in COUNT_COLUMNS), "problem string"]
)


def _copies_together(frame: Any, backfill: Backfill, names: list[str]) -> Any:
    """``frame`` (positional column names) with every copy of an event in one partition, as many as before.

    Rows are placed by a digest of the event each makes, never by their values: rows spelled apart
    can make one event (times a few microseconds apart that Lago's milliseconds make one, a map's
    entries in either order or with a null entry, a struct of nulls beside a null struct), and such
    copies must meet to be numbered apart. The digest is a column of its own, dropped before sending.
    """
    if backfill.key_column is not None:
        return frame  # each row has its own key: no occurrence to count, no shuffle
    from pyspark.sql import functions
    from pyspark.sql.types import LongType, StructField, StructType

    if backfill.layout < PLACED_BY_EVENTS:
        # A job begun when rows were placed by their values keeps that placement, so a re-run finds its
        # partitions' checkpoints: an xxhash64 of the row, nested columns through their JSON.
        values = [_by_value(field, functions) for field in frame.schema.fields]
        return frame.repartition(frame.rdd.getNumPartitions(), functions.xxhash64(*values))

    def hashes(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow

        for batch in batches:
            rows = batch.rename_columns(names).to_pylist()
            # Spark's long is signed: the same 64 bits, read as a signed number.
            digests = [_signed(row_hash(backfill, row)) for row in rows]
            yield batch.append_column(HASH_COLUMN, pyarrow.array(digests, pyarrow.int64()))

    # A new schema: StructType.add would change the frame's own, which PySpark keeps.
    schema = StructType([*frame.schema.fields, StructField(HASH_COLUMN, LongType(), nullable=False)])
    hashed = frame.mapInArrow(hashes, schema)
    # Hash partitioning depends on the values only: a retried or re-run task gets the same rows.
    return hashed.repartition(frame.rdd.getNumPartitions(), functions.col(HASH_COLUMN))


def _by_value(field: Any, functions: Any) -> Any:
    from pyspark.sql.types import ArrayType, MapType, StructType

    nested = isinstance(field.dataType, ArrayType | MapType | StructType)
    return functions.to_json(functions.col(field.name)) if nested else functions.col(field.name)


def _signed(number: int) -> int:
    return number - (1 << 64) if number >= 1 << 63 else number


def summaries(frame: Any, backfill: Backfill) -> Any:
    """A lazy Spark DataFrame of one summary row per partition: write it, or collect it."""
    prepared = backfill.prepare()
    names = list(frame.columns)
    check_columns(prepared, names)

    def send(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow

        columns = list(range(len(names)))  # without the placing digest, when there is one
        rows = ArrowRows(batch.select(columns).rename_columns(names) for batch in batches)
        summary = send_partition(rows, prepared)
        yield pyarrow.RecordBatch.from_pylist([summary], schema=summary_schema(EXTRA))

    # Spark resolves "prop.n" as a field of "prop": columns go in under positional names, and get theirs back.
    positional = frame.toDF(*(f"_{index}" for index in range(len(names))))
    return _copies_together(positional, prepared, names).mapInArrow(send, SUMMARY_DDL)


def backfill(frame: Any, backfill: Backfill) -> BackfillResult:
    """Send every partition of ``frame``; the summary of each partition (pandas) and the total."""
    import pandas

    # collect(), not toPandas(): toPandas may run a failed job a second time without Arrow.
    rows = [row.asDict() for row in summaries(frame, backfill).collect()]
    partitions = pandas.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    return BackfillResult(partitions, total(rows))
