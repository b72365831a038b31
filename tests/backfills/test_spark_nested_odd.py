"""Spark frames whose copies of one event are spelled apart in nested or timestamp columns.

Without a key column, copies of one event must meet in one partition to be numbered 1, 2, ...;
copies hashed apart share a key and are billed once. One ``local[2]`` session for the module.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from backfills.support import START, Mock, backfill_for, stored_once
from billing_events.backfill import spark as spark_backfill

ROWS = 64  # 8 events, 8 copies of each, spelled two ways in turn


def _lago(spark: SparkSession, *columns: str) -> object:
    return spark.range(ROWS, numPartitions=8).selectExpr(
        "concat('sub_', id % 8) AS external_subscription_id", "'api_calls' AS code", *columns
    )


COPIES_SPELLED_APART = {
    "a map inside a struct, its entries in either order": (
        "named_struct('region', 'eu', 'tags', CASE WHEN (id DIV 8) % 2 = 0"
        " THEN map('a', concat('x', id % 8), 'b', 'y') ELSE map('b', 'y', 'a', concat('x', id % 8)) END)"
        " AS properties",
    ),
    "a map with a null entry, and without it": (
        "CASE WHEN (id DIV 8) % 2 = 0 THEN map('region', concat('r', id % 8), 'plan', CAST(NULL AS string))"
        " ELSE map('region', concat('r', id % 8)) END AS properties",
    ),
    "a struct of nulls, and a null struct": (
        "id % 8 AS `prop.n`",
        "CASE WHEN (id DIV 8) % 2 = 0 THEN named_struct('plan', CAST(NULL AS string))"
        " ELSE CAST(NULL AS struct<plan: string>) END AS properties",
    ),
    "Lago times that round to one millisecond": (
        f"timestamp_micros({START}L * 1000000 + (id % 8) * 1000000 + 100 + (id DIV 8) % 2 * 100) AS timestamp",
    ),
}


@pytest.mark.parametrize("columns", COPIES_SPELLED_APART.values(), ids=COPIES_SPELLED_APART.keys())
def test_copies_of_one_event_spelled_apart_are_each_billed(
    spark: SparkSession, mock: Mock, tmp_path: Path, columns: tuple[str, ...]
) -> None:
    spark_backfill.backfill(_lago(spark, *columns), backfill_for(mock, "lago", tmp_path / "ckpt"))

    assert stored_once(mock, "lago") == (ROWS, ROWS)
