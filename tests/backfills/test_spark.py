"""Backfills on Spark: ``local[2]`` (with task retries), 16 partitions, the mock over HTTP with faults on.

Scaled down from the issue's 200,000 rows to 20,000 so the suite stays within
CI's limit on 2 cores; one Spark session serves the whole module (start-up is slow).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from backfills.support import FAULTS, ExitAfter, FailFirstAttempt, Mock, backfill_for, stored_once
from billing_events.backfill import spark as spark_backfill
from billing_events.errors import ConfigurationError

ROWS = 20_000
PARTITIONS = 16
CHUNK_EVENTS = 100


def frame(spark: SparkSession) -> Any:
    return spark.range(ROWS, numPartitions=PARTITIONS).selectExpr(
        "concat('sub_', id % 50) AS external_subscription_id",
        "'api_calls' AS code",
        "id AS `prop.n`",
        "id / 4 AS `prop.gb`",
    )


@pytest.mark.parametrize("lago_store", ["postgres", "clickhouse"])
def test_a_failed_task_is_retried_and_every_event_is_stored_once(
    spark: SparkSession, mock: Mock, tmp_path: Path, lago_store: str
) -> None:
    mock.reset(lago_store)
    mock.faults(**FAULTS)
    (tmp_path / "faults").mkdir()
    backfill = backfill_for(
        mock, "lago", tmp_path / "ckpt", chunk_events=CHUNK_EVENTS,
        on_chunk=FailFirstAttempt(str(tmp_path / "faults"), after=3),
    )  # fmt: skip

    result = spark_backfill.backfill(frame(spark), backfill)

    assert (tmp_path / "faults" / "task-failed").exists()
    assert len(result.partitions) == PARTITIONS
    assert result.total["rows"] == ROWS
    # The retried task resumed from the checkpoint of its failed attempt.
    assert result.total["settled_earlier"] > 0
    assert stored_once(mock, "lago") == (ROWS, ROWS)


@pytest.mark.parametrize("lago_store", ["postgres", "clickhouse"])
def test_a_killed_job_run_again_sends_only_what_it_had_not_settled(
    spark: SparkSession, mock: Mock, tmp_path: Path, lago_store: str
) -> None:
    mock.reset(lago_store)
    mock.faults(**FAULTS)
    (tmp_path / "faults").mkdir()
    checkpoint = tmp_path / "ckpt"
    killing = backfill_for(
        mock,
        "lago",
        checkpoint,
        chunk_events=CHUNK_EVENTS,
        on_chunk=ExitAfter(str(tmp_path / "faults"), after=25),
    )
    with pytest.raises(Exception, match=r"Python worker exited unexpectedly|crashed|EOFError"):
        spark_backfill.backfill(frame(spark), killing)
    stored_by_the_killed_job, _ = stored_once(mock, "lago")
    assert 0 < stored_by_the_killed_job < ROWS

    result = spark_backfill.backfill(
        frame(spark), backfill_for(mock, "lago", checkpoint, chunk_events=CHUNK_EVENTS)
    )

    assert result.total["rows"] == ROWS
    assert result.total["settled_earlier"] > 0
    assert result.total["sent"] < ROWS
    assert stored_once(mock, "lago") == (ROWS, ROWS)


@pytest.mark.parametrize("lago_store", ["postgres", "clickhouse"])
def test_identical_rows_in_different_partitions_are_each_billed_once(
    spark: SparkSession, mock: Mock, tmp_path: Path, lago_store: str
) -> None:
    mock.reset(lago_store)
    mock.faults(**FAULTS)
    (tmp_path / "faults").mkdir()
    # 40 copies of each of 100 rows, spread over all 16 partitions.
    repeated = spark.range(4_000, numPartitions=PARTITIONS).selectExpr(
        "concat('sub_', id % 100) AS external_subscription_id",
        "'api_calls' AS code",
        "id % 100 AS `prop.n`",
        "map('region', concat('r', id % 3)) AS properties",  # a map: hashed through its JSON
    )
    backfill = backfill_for(
        mock, "lago", tmp_path / "ckpt", chunk_events=CHUNK_EVENTS,
        on_chunk=FailFirstAttempt(str(tmp_path / "faults"), after=3),
    )  # fmt: skip

    first = spark_backfill.backfill(repeated, backfill)
    again = spark_backfill.backfill(repeated, backfill_for(mock, "lago", tmp_path / "ckpt"))

    assert (tmp_path / "faults" / "task-failed").exists()
    assert len(first.partitions) == PARTITIONS
    assert first.total["delivered"] + first.total["duplicate"] + first.total["unknown"] == 4_000
    assert stored_once(mock, "lago") == (4_000, 4_000)
    assert again.total["settled_earlier"] == first.total["delivered"] + first.total["duplicate"]
    assert again.total["sent"] == first.total["unknown"] + first.total["failed"]


def test_the_summaries_are_a_spark_dataframe_that_can_be_written(
    spark: SparkSession, mock: Mock, tmp_path: Path
) -> None:
    small = spark.range(40, numPartitions=4).selectExpr(
        "concat('sub_', id) AS external_subscription_id", "'api_calls' AS code", "id AS transaction_id"
    )
    summaries = spark_backfill.summaries(small, backfill_for(mock, "lago", tmp_path / "ckpt"))
    summaries.write.parquet(str(tmp_path / "summary"))

    written = spark.read.parquet(str(tmp_path / "summary")).toPandas()
    assert written["delivered"].sum() == 40
    assert sorted(event["transaction_id"] for event in mock.events("lago")) == sorted(
        str(i) for i in range(40)
    )


def test_a_frame_with_a_column_that_maps_to_nothing_is_refused_before_anything_is_sent(
    spark: SparkSession, mock: Mock, tmp_path: Path
) -> None:
    frame = spark.createDataFrame(
        [("sub_1", "api_calls", 1)], "external_subscription_id string, code string, prop_n long"
    )

    with pytest.raises(ConfigurationError, match=r"unknown column 'prop_n'"):
        spark_backfill.backfill(frame, backfill_for(mock, "lago", tmp_path / "ckpt"))

    assert mock.events("lago") == []


def test_copies_of_an_event_whose_maps_list_their_entries_in_either_order_are_each_billed(
    spark: SparkSession, mock: Mock, tmp_path: Path
) -> None:
    # One event's map, its entries in either order, and an empty map beside a null one: each pair
    # makes one event, so its copies must meet in one partition to be numbered apart.
    copies = spark.range(64, numPartitions=8).selectExpr(
        "concat('sub_', id % 8) AS external_subscription_id",
        "'api_calls' AS code",
        "CASE WHEN id % 8 = 0 AND (id DIV 8) % 2 = 0 THEN NULL"
        " WHEN id % 8 = 0 THEN CAST(map() AS map<string, string>)"
        " WHEN (id DIV 8) % 2 = 0 THEN map('region', 'eu', 'plan', concat('p', id % 8))"
        " ELSE map('plan', concat('p', id % 8), 'region', 'eu') END AS properties",
    )

    result = spark_backfill.backfill(copies, backfill_for(mock, "lago", tmp_path / "ckpt"))

    assert result.total["delivered"] == 64
    assert stored_once(mock, "lago") == (64, 64)
