"""Pacing rows of ``make bench``: goodput at the provider's rate budget, 429s, and track()→delivered p99.

    python -m bench.pacing [--seconds 6] [--providers togai,lago]

The mock (``billing-events mock``, separate process) enforces a limit of 50 requests/s on the event
endpoint: Togai's published limit for /ingestBatch, and Lago's published 500 requests/s for
/events/batch scaled down to 50 so that the mock and four senders fit 2 cores. Each sending process runs a background sender (batches of 10 events) and tracks events
at a steady rate; together the processes offer 120% of the budget, so the budget is the ceiling.
Rows: one process paced; four processes sharing a SQLite budget; four pacing independently; and
today's behaviour before pacing (``max_requests_per_second=None``), one process and four.
Goodput is the accepted requests per whole second over the budget (the first and last seconds are
partial and left out); the 429 share is of all requests; the p99 is over every delivered event.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "bench-token"
LIMIT = 50.0  # Togai's published limit; Lago's 500/s scaled down to fit 2 cores, requests/s
BATCH = 10
OVERLOAD = 1.2
DEFAULT_SECONDS = 6.0
GROUP = {"togai": "togai.ingest_batch", "lago": "lago.create_batch_events"}
# (label, processes, paced, shared budget)
SCENARIOS = [
    ("1 process, paced", 1, True, False),
    ("4 processes, local budget", 4, True, True),
    ("4 processes, no shared budget", 4, True, False),
    ("1 process, no pacing (before)", 1, False, False),
    ("4 processes, no pacing (before)", 4, False, False),
]


@contextmanager
def rate_limited_mock() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT / "tests"),
        MOCK_PORT=str(port),
        MOCK_TOKEN=TOKEN,
        MOCK_RATE_LIMITS=json.dumps({"enabled": True, "limits": {"lago.create_batch_events": LIMIT}}),
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "billing_events.mock"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    origin = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{origin}/_mock/stats", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the mock did not start") from None
                time.sleep(0.05)
        yield origin
    finally:
        process.terminate()
        process.wait(10)


def _event(provider: str, worker: int, n: int) -> dict[str, Any]:
    if provider == "togai":
        return {
            "schemaName": "api_calls",
            "id": f"p{worker}-{n}",
            "timestamp": "2024-05-01T10:15:30Z",
            "accountId": f"account-{n % 7}",
            "attributes": [{"name": "calls", "value": "1"}],
            "dimensions": {"region": "eu-west-1"},
        }
    return {
        "transaction_id": f"p{worker}-{n}",
        "external_subscription_id": f"sub-{n % 5}",
        "code": "api_calls",
        "timestamp": 1714558530 + n,
        "properties": {"calls": 1},
    }


def sender(*args: Any) -> None:
    """``_send`` in a child process; an error is reported to the parent (on ``out``, the last argument)."""
    try:
        _send(*args)
    except BaseException as exc:
        args[-1].put(("error", repr(exc)))
        raise


def _send(
    worker: int,
    provider: str,
    url: str,
    rate: float,
    seconds: float,
    pace: float | None,
    budget: str | None,
    go: Any,
    out: Any,
) -> None:
    """Track events at ``rate`` per second for ``seconds`` through a background sender; report latencies."""
    from billing_events import Lago, RetryPolicy, Togai

    cls = Togai if provider == "togai" else Lago
    tracked: dict[str, float] = {}
    latencies: list[float] = []
    policy = RetryPolicy(max_attempts=30, deadline=120)
    out.put("ready")
    go.wait(60)
    with cls(
        TOKEN,
        base_url=url,
        retry=policy,
        max_batch_events=BATCH,
        max_requests_per_second=pace,
        rate_budget=budget,
    ) as client:
        background = client.background(
            flush_at_events=BATCH,
            flush_interval=0.1,
            workers=4,
            on_outcome=lambda o: latencies.append(time.monotonic() - tracked[o.key]) if o.delivered else None,
        )
        start = time.monotonic()
        total = int(rate * seconds)
        for n in range(total):
            due = start + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # a steady producer: the bench offers load at a set rate
            event = _event(provider, worker, n)
            tracked[event["id" if provider == "togai" else "transaction_id"]] = time.monotonic()
            background.track(event)
        background.close(timeout=180)
    out.put((len(latencies), total, sorted(latencies)))


def run_scenario(
    origin: str, provider: str, processes: int, paced: bool, shared: bool, seconds: float
) -> dict[str, float]:
    url = f"{origin}/togai" if provider == "togai" else f"{origin}/lago/api/v1"
    httpx.post(f"{origin}/_mock/reset", timeout=10).raise_for_status()
    with tempfile.TemporaryDirectory() as folder:
        budget = f"sqlite:///{folder}/budget.db?key=bench" if shared else None
        context = multiprocessing.get_context("spawn")
        go, out = context.Event(), context.Queue()
        rate = LIMIT * BATCH * OVERLOAD / processes
        workers = [
            context.Process(
                target=sender,
                args=(n, provider, url, rate, seconds, LIMIT if paced else None, budget, go, out),
            )
            for n in range(processes)
        ]
        for worker in workers:
            worker.start()
        for _ in workers:
            if out.get(timeout=120) != "ready":
                raise RuntimeError("a sending process failed at start-up")
        go.set()
        reports = [out.get(timeout=600) for _ in workers]
        failed = [report for report in reports if report[0] == "error"]
        if failed:
            raise RuntimeError(f"a sending process failed: {failed[0][1]}")
        for worker in workers:
            worker.join(30)
    seconds_counted = httpx.get(f"{origin}/_mock/rate_limits", timeout=10).json()["seconds"]
    per_second = sorted((int(s), groups.get(GROUP[provider], {})) for s, groups in seconds_counted.items())
    by_second = dict(per_second)
    span = [by_second.get(s, {}) for s in range(per_second[0][0], per_second[-1][0] + 1)]
    accepted = [counts.get("accepted", 0) for counts in span]
    throttled = [counts.get("throttled", 0) for counts in span]
    whole = accepted[1:-1] or accepted
    latencies = sorted(latency for report in reports for latency in report[2])
    delivered = sum(report[0] for report in reports)
    offered = sum(report[1] for report in reports)
    p99 = latencies[max(0, math.ceil(0.99 * len(latencies)) - 1)] if latencies else float("nan")
    return {
        "goodput": sum(whole) / (LIMIT * len(whole)),
        "share_429": sum(throttled) / max(1, sum(accepted) + sum(throttled)),
        "p99": p99,
        "delivered": delivered / max(1, offered),
    }


def table(results: list[tuple[str, str, dict[str, float]]], seconds: float) -> Table:
    grid = Table(
        title=f"Pacing against the rate-limited mock: {LIMIT:.0f} requests/s on the event endpoint (Togai's"
        f" published limit; Lago's 500/s scaled down to fit 2 cores), {OVERLOAD:.0%} of it offered for {seconds:.0f} s, batches of {BATCH}",
    )
    for column in (
        "provider",
        "senders",
        "goodput / budget",
        "429s / requests",
        "p99 track()→delivered",
        "delivered",
    ):
        grid.add_column(column, justify="left" if column in ("provider", "senders") else "right")
    for provider, label, figures in results:
        grid.add_row(
            provider,
            label,
            f"{figures['goodput']:.0%}",
            f"{figures['share_429']:.1%}",
            f"{figures['p99']:.2f} s",
            f"{figures['delivered']:.0%}",
        )
    return grid


def measure(console: Console, providers: Sequence[str], seconds: float) -> Table:
    """Run every scenario for each provider against one rate-limited mock; the table of figures."""
    results: list[tuple[str, str, dict[str, float]]] = []
    with rate_limited_mock() as origin:
        for provider in providers:
            for label, processes, paced, shared in SCENARIOS:
                console.print(f"  pacing: {provider}, {label} …", highlight=False)
                results.append(
                    (provider, label, run_scenario(origin, provider, processes, paced, shared, seconds))
                )
    return table(results, seconds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=DEFAULT_SECONDS, help="load time per row (default: 6)"
    )
    parser.add_argument("--providers", default="togai,lago")
    args = parser.parse_args(argv)
    console = Console(width=max(Console().width, 130))
    console.print(measure(console, [name for name in args.providers.split(",") if name], args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
