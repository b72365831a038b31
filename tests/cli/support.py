"""Event factories and file helpers shared by the CLI tests."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import orjson
import pytest
from attrs import frozen

from billing_events import Report
from billing_events.cli import _sending
from billing_events.cli._run import EventSender

START = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


@frozen
class CliResult:
    code: int
    out: str
    err: str


class RunCli(Protocol):
    def __call__(self, *argv: str) -> CliResult: ...


def freeze_monotonic(monkeypatch: pytest.MonkeyPatch, read: Callable[[], float]) -> None:
    """``time.monotonic`` reads ``read()`` on the calling thread (where ``run_cli`` runs the CLI) and the real
    clock on every other: the mock's server thread keeps real timers, so its loop never sleeps through
    its shutdown on a select timeout made of a frozen clock."""
    real = time.monotonic
    caller = threading.get_ident()
    monkeypatch.setattr(time, "monotonic", lambda: read() if threading.get_ident() == caller else real())


def togai_event(index: int, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "schemaName": "api_calls",
        "timestamp": (START + dt.timedelta(seconds=index)).isoformat().replace("+00:00", "Z"),
        "accountId": f"acct_{index % 7}",
        "attributes": [{"name": "calls", "value": str(1 + index % 3)}],
        "dimensions": {"region": ["eu-west-1", "us-east-1"][index % 2]},
    }
    event.update(changes)
    return event


def lago_event(index: int, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "external_subscription_id": f"sub_{index % 5}",
        "code": "api_calls",
        "timestamp": int(START.timestamp()) + index,
        "properties": {"region": ["eu-west-1", "us-east-1"][index % 2]},
    }
    event.update(changes)
    return event


def make_event(provider: str, index: int, **changes: Any) -> dict[str, Any]:
    return togai_event(index, **changes) if provider == "togai" else lago_event(index, **changes)


def write_jsonl(path: Path, events: Sequence[dict[str, Any] | str]) -> Path:
    """One line per item: a dict is written as JSON, a string as it is (for broken lines)."""
    with path.open("wb") as target:
        for item in events:
            target.write(item.encode() if isinstance(item, str) else orjson.dumps(item))
            target.write(b"\n")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


@contextmanager
def wrapped_sender(
    monkeypatch: pytest.MonkeyPatch, wrap: Callable[[EventSender], EventSender]
) -> Iterator[None]:
    """While active, the CLI's client is wrapped by ``wrap`` (a sender that crashes, records or stops)."""
    real_open = _sending.open_sender

    def open_wrapped(*args: Any) -> Any:
        open_client = real_open(*args)

        @asynccontextmanager
        async def wrapped() -> AsyncIterator[EventSender]:
            async with open_client() as client:
                yield wrap(client)

        def factory() -> AbstractAsyncContextManager[EventSender]:
            return wrapped()

        return factory

    with monkeypatch.context() as patch:
        patch.setattr(_sending, "open_sender", open_wrapped)
        yield


def report_of(path: Path) -> dict[str, Any]:
    report: dict[str, Any] = orjson.loads(path.read_bytes())
    return report


def dead_letter(provider: str, index: int, status: str, days_ago: float) -> dict[str, Any]:
    """A dead letter of ``make_event(provider, index)`` under the key ``k-<index>``, written ``days_ago``."""
    key_field = "id" if provider == "togai" else "transaction_id"
    written = dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)
    return {
        "provider": provider,
        "key": f"k-{index}",
        "status": status,
        "reason": "x",
        "event": make_event(provider, index, **{key_field: f"k-{index}"}),
        "at": written.isoformat(timespec="milliseconds"),
    }


def start_ingest(mock: Any, token: str, provider: str, source: Path, *extra: str) -> subprocess.Popen[str]:
    """``billing-events ingest`` in a child process against ``mock``, printing each checkpoint on stderr."""
    env = dict(
        os.environ,
        TOGAI_API_TOKEN=token,
        LAGO_API_KEY=token,
        TOGAI_BASE_URL=mock.togai_url,
        LAGO_API_URL=mock.lago_url,
    )
    command = [sys.executable, "-m", "billing_events.cli", "ingest", provider, str(source)]
    command += ["--batch-events", "10", "--max-in-flight", "2", "--verbose", "--no-progress", *extra]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(process: subprocess.Popen[str]) -> str:
    """The child's first checkpoint line; the test fails (and the child is killed) on anything else."""
    assert process.stderr is not None
    line = process.stderr.readline()
    if not line.startswith("settled "):
        process.kill()
        _, rest = process.communicate(timeout=30)
        pytest.fail(f"expected a checkpoint line, got {line!r}{rest}")
    return line


class SigintOnCall:
    """Passes batches to the real client; on call ``stop_on`` it sends SIGINT to its own process first."""

    def __init__(self, inner: EventSender, stop_on: int) -> None:
        self._inner = inner
        self._stop_on = stop_on
        self.calls = 0

    async def send(self, events: Iterable[Mapping[str, Any]]) -> Report:
        self.calls += 1
        if self.calls == self._stop_on:
            os.kill(os.getpid(), signal.SIGINT)  # handled on the loop's next turn, this batch in flight
        return await self._inner.send(events)
