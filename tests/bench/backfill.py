"""Backfill rows of ``make bench``: events/s through the Dask and Spark adapters, 2 workers, one engine a run.

    python -m bench.backfill ENGINE ORIGIN ROWS IN_FLIGHT

Prints one JSON line: rows, seconds (the ``backfill()`` call only, not the
engine's start-up), events/s, the peak RSS of each worker process and the
CPU time the workers spent per row (both read by the workers themselves after
each checkpointed chunk; CPU time does not depend on what else shares the machine). Lago rows, without
keys or timestamps: the backfill derives both, and checkpoints every chunk.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from attrs import frozen

from billing_events.backfill import Backfill

TOKEN = "bench-token"
PARTITIONS = 16
LAGO_BATCH = 100


@frozen
class RecordPeakRss:
    """Called after each chunk on the worker: keeps the worker process's peak RSS and CPU time in files."""

    directory: str

    def __call__(self, partition: str, chunks: int) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        Path(self.directory, f"{os.getpid()}.rss").write_text(str(usage.ru_maxrss))
        Path(self.directory, f"{os.getpid()}.cpu").write_text(str(usage.ru_utime + usage.ru_stime))


def peaks_mib(directory: str) -> list[float]:
    return sorted((int(path.read_text()) / 1024 for path in Path(directory).glob("*.rss")), reverse=True)


def cpu_seconds(directory: str) -> float:
    """The workers' CPU time up to their last chunk, start-up included (Spark's Python workers)."""
    return sum(float(path.read_text()) for path in Path(directory).glob("*.cpu"))


def lago_rows(count: int) -> list[dict[str, Any]]:
    return [
        {"external_subscription_id": f"sub_{i % 500}", "code": "api_calls", "prop.n": i, "prop.region": "eu"}
        for i in range(count)
    ]


def _warm() -> None:
    """What every worker imports for its first partition: start-up, as the engine's own, is not measured."""
    import billing_events.backfill.dask
    import billing_events.backfill.partition  # noqa: F401


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_dask(backfill: Backfill, rows: int) -> tuple[float, float | None]:
    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client, LocalCluster

    from billing_events.backfill import dask as dask_backfill

    frame = dd.from_pandas(pd.DataFrame(lago_rows(rows)), npartitions=PARTITIONS)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        frame = frame.persist()
        client.run(_warm)
        cpu_before = client.run(_process_cpu)
        started = time.perf_counter()
        result = dask_backfill.backfill(frame, backfill)
        elapsed = time.perf_counter() - started
        cpu = sum(client.run(_process_cpu).values()) - sum(cpu_before.values())
    _check(result.total, rows)
    return elapsed, cpu


def run_spark(backfill: Backfill, rows: int) -> tuple[float, float | None]:
    from pyspark.sql import SparkSession

    from billing_events.backfill import spark as spark_backfill

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.executorEnv.PYTHONPATH", os.environ.get("PYTHONPATH", ""))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        frame = spark.range(rows, numPartitions=PARTITIONS).selectExpr(
            "concat('sub_', id % 500) AS external_subscription_id",
            "'api_calls' AS code",
            "id AS `prop.n`",
            "'eu' AS `prop.region`",
        )
        frame.cache().count()
        started = time.perf_counter()
        result = spark_backfill.backfill(frame, backfill)
        elapsed = time.perf_counter() - started
    finally:
        spark.stop()
    _check(result.total, rows)
    return elapsed, None


def _check(total: dict[str, int], rows: int) -> None:
    if total["delivered"] != rows:
        raise RuntimeError(f"backfill: {total['delivered']} delivered of {rows}: {total}")


def main(engine: str, origin: str, rows: int, in_flight: int) -> None:
    with tempfile.TemporaryDirectory() as checkpoint, tempfile.TemporaryDirectory() as peaks:
        backfill = Backfill(
            "lago",
            checkpoint,
            client_options={"token": TOKEN, "base_url": f"{origin}/lago/api/v1"},
            max_in_flight=in_flight,
            # A chunk keeps every lane busy for several rounds before its checkpoint is written.
            chunk_events=LAGO_BATCH * in_flight * 4,
            on_chunk=RecordPeakRss(peaks),
        )
        elapsed, cpu = (run_dask if engine == "dask" else run_spark)(backfill, rows)
        print(
            orjson.dumps(
                {
                    "engine": engine,
                    "rows": rows,
                    "seconds": elapsed,
                    "rate": rows / elapsed,
                    "worker_peak_rss_mib": peaks_mib(peaks),
                    "worker_cpu_us_per_row": (cpu if cpu is not None else cpu_seconds(peaks)) / rows * 1e6,
                }
            ).decode()
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
