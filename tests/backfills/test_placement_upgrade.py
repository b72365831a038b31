"""A job begun when a frame's rows were placed by their values keeps that placement when run again.

Its checkpoints are named by the rows of each partition: placed another way, the partitions would
have other names, and every settled row would be sent again.
"""

from __future__ import annotations

from pathlib import Path

import dask.dataframe as dd
import orjson
import pandas as pd

from backfills.support import Mock, backfill_for, lago_rows
from billing_events.backfill import dask as dask_backfill
from billing_events.backfill._engines import pandas_rows
from billing_events.backfill.partition import partition_name, row_digest


def _names_placed_by_values(frame: dd.DataFrame) -> set[str]:
    """The partition names the earlier version gave: Dask's shuffle on the values of every column."""
    shuffled = frame.shuffle(on=list(frame.columns), npartitions=frame.npartitions)
    names = set()
    for index in range(shuffled.npartitions):
        part = shuffled.get_partition(index).compute(scheduler="sync")
        names.add(partition_name([row_digest(row) for row in pandas_rows(part, "dask")]))
    return names


def test_a_job_begun_with_rows_placed_by_their_values_keeps_that_placement(
    mock: Mock, tmp_path: Path
) -> None:
    frame = dd.from_pandas(pd.DataFrame(lago_rows(400)), npartitions=4)
    earlier = tmp_path / "earlier"
    backfill_for(mock, "lago", earlier).prepare()
    job = orjson.loads((earlier / "backfill.json").read_bytes())
    (earlier / "backfill.json").write_bytes(orjson.dumps({**job, "version": 2}))

    kept = dask_backfill.backfill(frame, backfill_for(mock, "lago", earlier), scheduler="sync")
    new = dask_backfill.backfill(frame, backfill_for(mock, "lago", tmp_path / "new"), scheduler="sync")

    assert set(kept.partitions["partition"]) == _names_placed_by_values(frame)
    assert set(new.partitions["partition"]) != _names_placed_by_values(frame)  # a new job: by events
    assert kept.total["delivered"] == 400
