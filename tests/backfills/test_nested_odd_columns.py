"""Dask and Spark frames with nested and odd columns: each row's event as the CLI makes it, every copy billed.

Found in review of the shuffle on each row's event (Dask) and of a map's sorted entries (Spark).
Dask runs on the synchronous scheduler: the same tasks as a cluster, in this process.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from backfills.support import START, Mock, backfill_for, stored_once
from billing_events.backfill import dask as dask_backfill

PAIRS = 20
PARTITIONS = 4


def _lago_parquet(directory: Path, properties: Any, rows: int) -> Path:
    directory.mkdir()
    table = pa.table(
        {
            "external_subscription_id": [f"sub_{index}" for index in range(rows)],
            "code": ["api_calls"] * rows,
            "properties": properties,
        }
    )
    pq.write_table(table, directory / "part-0.parquet")
    return directory


def test_a_map_inside_a_struct_read_by_dask_is_sent_as_an_object(mock: Mock, tmp_path: Path) -> None:
    kind = pa.struct([("region", pa.string()), ("tags", pa.map_(pa.string(), pa.string()))])
    properties = pa.array([{"region": "eu", "tags": [("a", "1"), ("b", "2")]}] * 3, type=kind)
    frame = dd.read_parquet(_lago_parquet(tmp_path / "data", properties, 3))

    result = dask_backfill.backfill(frame, backfill_for(mock, "lago", tmp_path / "ckpt"), scheduler="sync")

    assert result.total["delivered"] == 3, result.partitions["problem"].tolist()
    # As the CLI sends the same file: the map is an object.
    assert [event["properties"]["tags"] for event in mock.events("lago")] == [{"a": "1", "b": "2"}] * 3


def test_a_map_of_lists_read_by_dask_is_sent(mock: Mock, tmp_path: Path) -> None:
    kind = pa.map_(pa.string(), pa.list_(pa.string()))
    properties = pa.array([[("tags", ["x", "y"])]] * 3, type=kind)
    frame = dd.read_parquet(_lago_parquet(tmp_path / "data", properties, 3))

    result = dask_backfill.backfill(frame, backfill_for(mock, "lago", tmp_path / "ckpt"), scheduler="sync")

    assert result.total["delivered"] == 3, result.partitions["problem"].tolist()
    assert [event["properties"] for event in mock.events("lago")] == [{"tags": ["x", "y"]}] * 3


def test_a_map_with_integer_keys_read_by_dask_is_sent(mock: Mock, tmp_path: Path) -> None:
    properties = pa.array([[(1, 10), (2, 20)]] * 3, type=pa.map_(pa.int64(), pa.int64()))
    frame = dd.read_parquet(_lago_parquet(tmp_path / "data", properties, 3))

    result = dask_backfill.backfill(frame, backfill_for(mock, "lago", tmp_path / "ckpt"), scheduler="sync")

    assert result.total["delivered"] == 3, result.partitions["problem"].tolist()
    assert [event["properties"] for event in mock.events("lago")] == [{"1": 10, "2": 20}] * 3


def test_lago_times_that_round_to_one_millisecond_are_each_billed(mock: Mock, tmp_path: Path) -> None:
    start = pd.Timestamp(dt.datetime.fromtimestamp(START, dt.UTC))
    rows = pd.DataFrame(
        {
            "external_subscription_id": [f"sub_{index}" for index in range(PAIRS)] * 2,
            "code": ["api_calls"] * (2 * PAIRS),
            # 100 µs and 200 µs past the second: the events carry milliseconds, so each pair is one event twice.
            "timestamp": [start + pd.Timedelta(seconds=index, microseconds=100) for index in range(PAIRS)]
            + [start + pd.Timedelta(seconds=index, microseconds=200) for index in range(PAIRS)],
        }
    )
    frame = dd.from_pandas(rows, npartitions=PARTITIONS)

    dask_backfill.backfill(frame, backfill_for(mock, "lago", tmp_path / "ckpt"), scheduler="sync")

    assert stored_once(mock, "lago") == (2 * PAIRS, 2 * PAIRS)


def test_one_row_nested_too_deep_is_rejected_and_the_others_sent(mock: Mock, tmp_path: Path) -> None:
    deep: dict[str, Any] = {"n": 1}
    for _ in range(300):
        deep = {"n": deep}
    rows = pd.DataFrame(
        {
            "external_subscription_id": [f"sub_{index}" for index in range(8)],
            "code": ["api_calls"] * 8,
            "properties": pd.Series([{"n": index} for index in range(7)] + [deep], dtype=object),
        }
    )
    _one_rejected_seven_sent(rows, mock, tmp_path)


def test_a_timestamp_column_named_like_the_hidden_column_keeps_its_times(mock: Mock, tmp_path: Path) -> None:
    column = dask_backfill.HASH_COLUMN
    rows = pd.DataFrame(
        {
            "external_subscription_id": [f"sub_{index}" for index in range(4)],
            "code": ["api_calls"] * 4,
            "properties": pd.Series([{"n": index} for index in range(4)], dtype=object),
            column: [START + index for index in range(4)],
        }
    )
    backfill = backfill_for(mock, "lago", tmp_path / "ckpt", timestamp_column=column)
    with dask.config.set({"dataframe.convert-string": False}):
        dask_backfill.backfill(dd.from_pandas(rows, npartitions=2), backfill, scheduler="sync")

    stored = sorted(
        dt.datetime.fromisoformat(event["timestamp"]).timestamp() for event in mock.events("lago")
    )
    assert stored == [START + index for index in range(4)]


def test_togai_rows_differing_only_in_the_unit_of_a_null_attribute_are_each_billed(
    mock: Mock, tmp_path: Path
) -> None:
    stamp = dt.datetime.fromtimestamp(START, dt.UTC)
    rows = pd.DataFrame(
        {
            "schemaName": ["api_calls"] * (2 * PAIRS),
            "accountId": [f"acct_{index}" for index in range(PAIRS)] * 2,
            "timestamp": [stamp] * (2 * PAIRS),
            "attr.calls": [1] * (2 * PAIRS),
            "attr.gb": pd.Series([None] * (2 * PAIRS), dtype="float64"),
            # The unit of a null attribute is left out of the event: each pair is one event twice.
            "unit.gb": [f"unit_{index}" for index in range(PAIRS)] + [None] * PAIRS,
        }
    )
    frame = dd.from_pandas(rows, npartitions=PARTITIONS)

    dask_backfill.backfill(frame, backfill_for(mock, "togai", tmp_path / "ckpt"), scheduler="sync")

    assert stored_once(mock, "togai") == (2 * PAIRS, 2 * PAIRS)


def test_one_text_with_a_lone_surrogate_is_rejected_and_the_others_sent(mock: Mock, tmp_path: Path) -> None:
    rows = pd.DataFrame(
        {
            # Text decoded with errors="surrogateescape" keeps an undecodable byte as a lone surrogate.
            "external_subscription_id": [f"sub_{index}" for index in range(7)] + ["sub_\udcff"],
            "code": ["api_calls"] * 8,
            "properties": pd.Series([{"n": index} for index in range(8)], dtype=object),
        }
    )
    _one_rejected_seven_sent(rows, mock, tmp_path)


def test_one_bag_row_with_a_lone_surrogate_is_rejected_and_the_others_sent(
    mock: Mock, tmp_path: Path
) -> None:
    import dask.bag

    rows = [
        {"external_subscription_id": f"sub_{index}", "code": "api_calls", "prop.n": index}
        for index in range(7)
    ]
    rows.append({"external_subscription_id": "sub_\udcff", "code": "api_calls", "prop.n": 7})
    bag = dask.bag.from_sequence(rows, npartitions=2)

    result = dask_backfill.backfill(bag, backfill_for(mock, "lago", tmp_path / "ckpt"), scheduler="sync")

    assert result.total["rejected"] == 1
    assert result.total["delivered"] == 7


def _one_rejected_seven_sent(rows: pd.DataFrame, mock: Mock, tmp_path: Path) -> None:
    with dask.config.set({"dataframe.convert-string": False}):
        frame = dd.from_pandas(rows, npartitions=2)
        result = dask_backfill.backfill(
            frame, backfill_for(mock, "lago", tmp_path / "ckpt"), scheduler="sync"
        )

    assert result.total["rejected"] == 1
    assert result.total["delivered"] == 7
