"""Spark frames whose copies of one event are spelled apart in nested or timestamp columns.

Without a key column, copies of one event must meet in one partition to be numbered 1, 2, ...;
copies hashed apart share a key and are billed once. One ``local[2]`` session for the module.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from backfills.support import START, Mock, backfill_for, stored_once
from billing_events.backfill import spark as spark_backfill

ROWS = 64  # 8 events, 8 copies of each, spelled two ways in turn


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("billing-events-nested-odd-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.memory", "512m")
        .config("spark.executorEnv.PYTHONPATH", os.environ.get("PYTHONPATH", ""))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _lago(spark: SparkSession, *columns: str) -> object:
    return spark.range(ROWS, numPartitions=8).selectExpr(
        "concat('sub_', id % 8) AS external_subscription_id", "'api_calls' AS code", *columns
    )


def test_copies_whose_struct_holds_a_map_in_either_order_are_each_billed(
    spark: SparkSession, mock: Mock, tmp_path: Path
) -> None:
    copies = _lago(
        spark,
        "named_struct('region', 'eu', 'tags', CASE WHEN (id DIV 8) % 2 = 0"
        " THEN map('a', concat('x', id % 8), 'b', 'y') ELSE map('b', 'y', 'a', concat('x', id % 8)) END)"
        " AS properties",
    )

    spark_backfill.backfill(copies, backfill_for(mock, "lago", tmp_path / "ckpt"))

    assert stored_once(mock, "lago") == (ROWS, ROWS)


def test_copies_whose_map_has_a_null_entry_or_none_are_each_billed(
    spark: SparkSession, mock: Mock, tmp_path: Path
) -> None:
    copies = _lago(
        spark,
        "CASE WHEN (id DIV 8) % 2 = 0 THEN map('region', concat('r', id % 8), 'plan', CAST(NULL AS string))"
        " ELSE map('region', concat('r', id % 8)) END AS properties",
    )

    spark_backfill.backfill(copies, backfill_for(mock, "lago", tmp_path / "ckpt"))

    assert stored_once(mock, "lago") == (ROWS, ROWS)


def test_copies_with_a_struct_of_nulls_or_a_null_struct_are_each_billed(
    spark: SparkSession, mock: Mock, tmp_path: Path
) -> None:
    copies = _lago(
        spark,
        "id % 8 AS `prop.n`",
        "CASE WHEN (id DIV 8) % 2 = 0 THEN named_struct('plan', CAST(NULL AS string))"
        " ELSE CAST(NULL AS struct<plan: string>) END AS properties",
    )

    spark_backfill.backfill(copies, backfill_for(mock, "lago", tmp_path / "ckpt"))

    assert stored_once(mock, "lago") == (ROWS, ROWS)


def test_lago_times_that_round_to_one_millisecond_are_each_billed(
    spark: SparkSession, mock: Mock, tmp_path: Path
) -> None:
    copies = _lago(
        spark,
        f"timestamp_micros({START}L * 1000000 + (id % 8) * 1000000 + 100 + (id DIV 8) % 2 * 100) AS timestamp",
    )

    spark_backfill.backfill(copies, backfill_for(mock, "lago", tmp_path / "ckpt"))

    assert stored_once(mock, "lago") == (ROWS, ROWS)
