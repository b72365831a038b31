"""A Dask backfill job in a process of its own, so a test can kill the whole job.

``python -m backfills.dask_job URL CHECKPOINT ROWS FAULT_DIR``: 2 worker
processes, 16 partitions; a worker is killed after 3 chunks and the whole
process group (driver, nannies, workers) after 25.
"""

from __future__ import annotations

import sys

import dask.dataframe as dd
import pandas as pd
from distributed import Client, LocalCluster

from backfills.support import KillJob, Mock, backfill_for, lago_rows
from billing_events.backfill import dask as dask_backfill

PARTITIONS = 16
CHUNK_EVENTS = 100


def frame(rows: int) -> dd.DataFrame:
    return dd.from_pandas(pd.DataFrame(lago_rows(rows)), npartitions=PARTITIONS)


def main(url: str, checkpoint: str, rows: int, fault_dir: str) -> None:
    backfill = backfill_for(
        Mock(url), "lago", checkpoint, chunk_events=CHUNK_EVENTS,
        on_chunk=KillJob(fault_dir, worker_after=3, job_after=25),
    )  # fmt: skip
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster),
    ):
        dask_backfill.backfill(frame(rows), backfill)
    sys.exit("the job was meant to be killed before it finished")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
