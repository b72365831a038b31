"""Shared by the backfill tests: the mock's admin side, rows, and faults that run inside workers.

Workers of Dask and Spark are separate processes: they reach the mock over real
HTTP, and the faults below are imported there by name (``tests`` is on their
PYTHONPATH), counting across processes with files.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
from attrs import frozen

from billing_events import RetryPolicy
from billing_events.backfill import Backfill

TOKEN = "backfill-test-token"
START = int(dt.datetime(2024, 5, 1, tzinfo=dt.UTC).timestamp())
# Fast retries: the faults below make many; the default backoff would only make the suite slow.
RETRY = RetryPolicy(max_attempts=12, initial_delay=0.01, max_delay=0.1, deadline=60)
FAULTS = {"rate_503": 0.05, "rate_lost_response": 0.05, "rate_drop": 0.02, "seed": 11}
TESTS_DIR = str(Path(__file__).resolve().parent.parent)


class Mock:
    def __init__(self, origin: str) -> None:
        self.origin = origin
        self._admin = httpx.Client(base_url=origin, timeout=30)

    def url(self, provider: str) -> str:
        return f"{self.origin}/togai" if provider == "togai" else f"{self.origin}/lago/api/v1"

    def reset(self, lago_store: str = "postgres") -> None:
        self._admin.post("/_mock/reset").raise_for_status()
        self._admin.put("/_mock/lago_store", json={"store": lago_store}).raise_for_status()

    def faults(self, **settings: Any) -> None:
        self._admin.put("/_mock/faults", json=settings).raise_for_status()

    def events(self, provider: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self._admin.get(f"/_mock/events/{provider}").json()
        return events

    def close(self) -> None:
        self._admin.close()


def lago_rows(count: int) -> list[dict[str, Any]]:
    """Distinct Lago rows without key or timestamp: the backfill derives both."""
    return [
        {"external_subscription_id": f"sub_{i % 50}", "code": "api_calls", "prop.n": i, "prop.gb": i / 4}
        for i in range(count)
    ]


def repeated_lago_rows(count: int, distinct: int) -> list[dict[str, Any]]:
    """Key-less Lago rows, ``count // distinct`` identical copies of each, interleaved: every partition gets copies."""
    return [
        {"external_subscription_id": f"sub_{i % distinct}", "code": "api_calls", "prop.n": i % distinct}
        for i in range(count)
    ]


def togai_rows(count: int) -> list[dict[str, Any]]:
    return [
        {
            "schemaName": "api_calls",
            "accountId": f"acct_{i % 50}",
            "timestamp": dt.datetime.fromtimestamp(START + i, dt.UTC),
            "attr.calls": i,
        }
        for i in range(count)
    ]


def backfill_for(mock: Mock, provider: str, checkpoint: Path | str, **options: Any) -> Backfill:
    return Backfill(
        provider,  # type: ignore[arg-type]
        str(checkpoint),
        client_options={"token": TOKEN, "base_url": mock.url(provider), "retry": RETRY, "timeout": 10},
        **options,
    )


def stored_once(mock: Mock, provider: str) -> tuple[int, int]:
    """(events stored, distinct keys among them) after the mock's deduplication."""
    field = "id" if provider == "togai" else "transaction_id"
    keys = [event[field] for event in mock.events(provider)]
    return len(keys), len(set(keys))


def _count(directory: str) -> int:
    Path(directory, f"chunk-{uuid.uuid4().hex}").touch()
    return sum(1 for name in os.listdir(directory) if name.startswith("chunk-"))


def _first(directory: str, name: str) -> bool:
    try:
        os.close(os.open(Path(directory, name), os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


@frozen
class KillWorker:
    """After the ``after``-th checkpointed chunk of the run, SIGKILL the worker process that saved it (once)."""

    directory: str
    after: int

    def __call__(self, partition: str, chunks: int) -> None:
        if _count(self.directory) >= self.after and _first(self.directory, "worker-killed"):
            os.kill(os.getpid(), signal.SIGKILL)


@frozen
class KillJob:
    """Kill a worker once after ``worker_after`` chunks, then the whole process group after ``job_after``."""

    directory: str
    worker_after: int
    job_after: int

    def __call__(self, partition: str, chunks: int) -> None:
        done = _count(self.directory)
        if done >= self.job_after and _first(self.directory, "job-killed"):
            os.killpg(0, signal.SIGKILL)
        if done >= self.worker_after and _first(self.directory, "worker-killed"):
            os.kill(os.getpid(), signal.SIGKILL)


@frozen
class FailFirstAttempt:
    """Raise in the task after the ``after``-th chunk of the run, once: the engine retries the task."""

    directory: str
    after: int

    def __call__(self, partition: str, chunks: int) -> None:
        if _count(self.directory) >= self.after and _first(self.directory, "task-failed"):
            raise RuntimeError("injected task failure")


@frozen
class ExitAfter:
    """From the ``after``-th chunk of the run on, every task's Python worker exits at once: the job dies."""

    directory: str
    after: int

    def __call__(self, partition: str, chunks: int) -> None:
        if _count(self.directory) >= self.after:
            os._exit(137)


def togai_row(**attributes: int) -> dict[str, Any]:
    """A Togai row with ``attr.<name>`` columns in the order given, timed at ``START``."""
    row: dict[str, Any] = {
        "schemaName": "api_calls",
        "accountId": "acct_1",
        "timestamp": dt.datetime.fromtimestamp(START, dt.UTC),
    }
    return row | {f"attr.{name}": value for name, value in attributes.items()}
