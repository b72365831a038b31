"""Fixtures of the pacing tests: the mock with its rate limits over real HTTP, a real redis-server, a fleet."""

from __future__ import annotations

import multiprocessing
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs
import httpx
import pytest

from billing_events.mock import create_app
from billing_events.mock.testing import serve_in_thread

from .workers import sender_process

# A small budget keeps each run short: 40 requests/s on the event endpoint.
BUDGET = 40.0
GROUP = {"togai": "togai.ingest_batch", "lago": "lago.create_batch_events"}
RUN_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve_in_thread(create_app()) as origin:
        yield origin


def base_url(origin: str, provider: str) -> str:
    return f"{origin}/togai" if provider == "togai" else f"{origin}/lago/api/v1"


@attrs.frozen
class Run:
    """What a fleet run did, as the mock counted it per second, and what each process reported."""

    accepted: list[int]
    throttled: list[int]
    statuses: dict[str, int]
    reported_429s: int
    stored: int
    # Seconds from the start signal to the last process done, measured by the test.
    elapsed: float

    @property
    def requests(self) -> int:
        return sum(self.accepted) + sum(self.throttled)

    @property
    def throttled_share(self) -> float:
        return sum(self.throttled) / self.requests

    def full_seconds(self) -> tuple[list[int], list[int]]:
        """The counts of the whole seconds of the run: the first and last seconds are partial."""
        return self.accepted[1:-1], self.throttled[1:-1]

    def load(self) -> float:
        """Requests sent (accepted and throttled) as a share of the budget over the run.

        The budget over the run is what the provider lets through in that time: the rate for the run's
        length, plus the one full bucket (a second of the rate) it starts with.
        """
        return self.requests / (BUDGET * self.elapsed + BUDGET)

    def goodput_share(self) -> float:
        """Accepted requests per whole second, as a share of the budget."""
        accepted, _ = self.full_seconds()
        return sum(accepted) / (BUDGET * len(accepted))


def run_fleet(
    origin: str,
    provider: str,
    kinds: list[str],
    *,
    requests_each: int,
    batch: int = 2,
    pace: float | None = BUDGET,
    budget: str | None = None,
) -> Run:
    """Start one process per kind, let them send together, wait for all; counts from the mock."""
    with httpx.Client(base_url=origin, timeout=10) as admin:
        admin.post("/_mock/reset").raise_for_status()
        admin.put(
            "/_mock/rate_limits", json={"enabled": True, "limits": {GROUP[provider]: BUDGET}}
        ).raise_for_status()
        context = multiprocessing.get_context("spawn")
        go = context.Event()
        results = context.Queue()
        url = base_url(origin, provider)
        processes = [
            context.Process(
                target=sender_process,
                args=(n, kind, provider, url, requests_each * batch, batch, pace, budget, go, results),
                daemon=True,
            )
            for n, kind in enumerate(kinds)
        ]
        for process in processes:
            process.start()
        try:
            replies = [results.get(timeout=RUN_TIMEOUT) for _ in processes]
            assert all(reply[0] == "ready" for reply in replies), replies
            started = time.monotonic()
            go.set()
            replies = [results.get(timeout=RUN_TIMEOUT) for _ in processes]
            elapsed = time.monotonic() - started
        finally:
            for process in processes:
                process.join(RUN_TIMEOUT)
                if process.is_alive():
                    process.kill()
        assert all(reply[0] == "done" for reply in replies), replies
        counters = admin.get("/_mock/rate_limits").json()["seconds"]
        stored = admin.get("/_mock/stats").json()[provider]["stored"]
        admin.put("/_mock/rate_limits", json={"enabled": False}).raise_for_status()
    seconds = sorted((int(second), groups.get(GROUP[provider], {})) for second, groups in counters.items())
    first, last = seconds[0][0], seconds[-1][0]
    by_second = dict(seconds)
    span = [by_second.get(second, {}) for second in range(first, last + 1)]
    statuses: dict[str, int] = {}
    for reply in replies:
        for status, count in reply[2].items():
            statuses[status] = statuses.get(status, 0) + count
    return Run(
        accepted=[counts.get("accepted", 0) for counts in span],
        throttled=[counts.get("throttled", 0) for counts in span],
        statuses=statuses,
        reported_429s=sum(reply[3] for reply in replies),
        stored=stored,
        elapsed=elapsed,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def redis_server(port: int, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """A real redis-server on loopback (``extra``: its options), up once it answers PING; stopped after."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed: `make test` installs it (see the Makefile's redis-server target)"
        )
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as probe:
                    probe.sendall(b"PING\r\n")
                    # A server with a password answers PING with NOAUTH: it is up all the same.
                    if probe.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                        break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
            time.sleep(0.05)  # polling a server's port: no event to wait on
        yield server
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A real redis-server on loopback, started for these tests and stopped after them."""
    port = _free_port()
    with redis_server(port):
        yield f"redis://127.0.0.1:{port}/0"


def summary(run: Run) -> dict[str, Any]:
    """What a failed assertion prints."""
    return {
        "accepted": run.accepted,
        "throttled": run.throttled,
        "statuses": run.statuses,
        "elapsed": round(run.elapsed, 2),
        "load": round(run.load(), 3),
        "throttled_share": round(run.throttled_share, 3),
    }
