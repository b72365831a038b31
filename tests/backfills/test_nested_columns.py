"""Dask frames with nested columns: structs and maps read from Parquet, and columns of dicts.

Without a key column the frame is shuffled so that copies of one event meet in one partition.
Pandas cannot hash a column of dicts or pairs, and would hash ``{"a": 1, "b": 2}`` and
``{"b": 2, "a": 1}`` apart though they make one event: such copies would share a key and be
billed once. The synchronous scheduler runs the same tasks as a cluster, in this process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backfills.support import START, Mock, backfill_for, stored_once
from billing_events.backfill import dask as dask_backfill
from billing_events.errors import ConfigurationError

DISTINCT = 6
COPIES = 4
FILES = 4


def _entries(index: int, copy: int) -> list[tuple[str, str]]:
    entries = [("region", f"eu-{index}"), ("plan", "pro")]
    return entries if copy % 2 else entries[::-1]  # the same map, its entries in either order


def _write_files(directory: Path, column: Any) -> Path:
    """``FILES`` Parquet files, each with one copy of every event: every copy in another partition."""
    directory.mkdir()
    for copy in range(COPIES):
        table = pa.table(
            {
                "external_subscription_id": [f"sub_{index}" for index in range(DISTINCT)],
                "code": ["api_calls"] * DISTINCT,
                "properties": column(copy),
            }
        )
        pq.write_table(table, directory / f"part-{copy}.parquet")
    return directory


def _maps(copy: int) -> Any:
    return pa.array(
        [_entries(index, copy) for index in range(DISTINCT)], type=pa.map_(pa.string(), pa.string())
    )


def _structs(copy: int) -> Any:
    return pa.array([dict(_entries(index, copy)) for index in range(DISTINCT)])


@pytest.mark.parametrize("column", [_maps, _structs], ids=["map", "struct"])
def test_copies_of_an_event_in_a_nested_parquet_column_are_each_billed(
    mock: Mock, tmp_path: Path, column: Any
) -> None:
    frame = dd.read_parquet(_write_files(tmp_path / "data", column))
    assert frame.npartitions == FILES

    result = dask_backfill.backfill(frame, backfill_for(mock, "lago", tmp_path / "ckpt"), scheduler="sync")

    assert result.total["delivered"] == DISTINCT * COPIES
    assert stored_once(mock, "lago") == (DISTINCT * COPIES, DISTINCT * COPIES)
    properties = {event["external_subscription_id"]: event["properties"] for event in mock.events("lago")}
    assert properties["sub_3"] == {"region": "eu-3", "plan": "pro"}


def test_a_column_of_dicts_spelled_in_either_order_bills_every_copy(mock: Mock, tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {
            "external_subscription_id": f"sub_{index}",
            "code": "api_calls",
            "properties": dict(_entries(index, copy)),
        }
        for copy in range(COPIES)
        for index in range(DISTINCT)
    ]
    with dask.config.set({"dataframe.convert-string": False}):
        frame = dd.from_pandas(pd.DataFrame(rows), npartitions=FILES)
        result = dask_backfill.backfill(
            frame, backfill_for(mock, "lago", tmp_path / "ckpt"), scheduler="sync"
        )

    assert result.total["delivered"] == DISTINCT * COPIES
    assert stored_once(mock, "lago") == (DISTINCT * COPIES, DISTINCT * COPIES)
    # The shuffle's column of hashes is the adapter's own: it never reaches an event.
    assert all(set(event["properties"]) == {"region", "plan"} for event in mock.events("lago"))


def test_a_column_of_dicts_made_into_text_is_refused_with_the_remedy(mock: Mock, tmp_path: Path) -> None:
    rows = pd.DataFrame(
        {
            "external_subscription_id": ["sub_1", "sub_2"],
            "code": "api_calls",
            "properties": [{"a": 1}, {"b": 2}],
        }
    )
    with dask.config.set({"dataframe.convert-string": True}):
        frame = dd.from_pandas(rows, npartitions=1)
        with pytest.raises(ConfigurationError, match=r"'properties' holds text .*dataframe.convert-string"):
            dask_backfill.backfill(frame, backfill_for(mock, "lago", tmp_path / "ckpt"), scheduler="sync")

    assert mock.events("lago") == []


def test_togai_attributes_and_dimensions_read_from_parquet_bill_every_copy(
    mock: Mock, tmp_path: Path
) -> None:
    directory = tmp_path / "data"
    directory.mkdir()
    dimensions_type = pa.map_(pa.string(), pa.string())
    for copy in range(COPIES):
        table = pa.table(
            {
                "schemaName": ["api_calls"] * DISTINCT,
                "accountId": [f"acct_{index}" for index in range(DISTINCT)],
                "timestamp": pa.array([START * 1_000_000] * DISTINCT, type=pa.timestamp("us", tz="UTC")),
                "attributes": [
                    [{"name": "calls", "value": str(index), "unit": None}] for index in range(DISTINCT)
                ],
                "dimensions": pa.array(
                    [_entries(index, copy) for index in range(DISTINCT)], type=dimensions_type
                ),
            }
        )
        pq.write_table(table, directory / f"part-{copy}.parquet")
    frame = dd.read_parquet(directory)

    result = dask_backfill.backfill(frame, backfill_for(mock, "togai", tmp_path / "ckpt"), scheduler="sync")

    assert result.total["delivered"] == DISTINCT * COPIES, result.partitions["problem"].tolist()
    assert stored_once(mock, "togai") == (DISTINCT * COPIES, DISTINCT * COPIES)
    stored = {event["accountId"]: event for event in mock.events("togai")}
    assert stored["acct_2"]["dimensions"] == {"region": "eu-2", "plan": "pro"}
    assert stored["acct_2"]["attributes"] == [{"name": "calls", "value": "2"}]
