"""Review r31 of stats, metrics and logging: defects found, each a strict xfail that passes once it is fixed.

The metrics are read back through the OpenTelemetry SDK's in-memory reader (the ``reader`` fixture of this
directory's conftest). The "log shipper" below is a ``logging.Handler`` whose ``emit`` raises, as a
handler that ships records over the network does when its endpoint is down.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from billing_events import AsyncTogai, OutcomeStatus, RetryPolicy, Togai
from billing_events import budgets as budgets_module
from billing_events import delivery as delivery_module
from billing_events import pacing as pacing_module

from .scripted import togai_event

ONCE = RetryPolicy(max_attempts=1)


def points(reader: InMemoryMetricReader, name: str) -> list[tuple[dict[str, Any], Any]]:
    """The data points of one metric: (attributes, value), the value a sum or a histogram point."""
    found: list[tuple[dict[str, Any], Any]] = []
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        value = point if hasattr(point, "bucket_counts") else point.value
                        found.append((dict(point.attributes or {}), value))
    return found


def refused(request: httpx.Request) -> httpx.Response:
    """Togai's 401: every event of the batch ends ``failed`` and is dead-lettered."""
    return httpx.Response(401, json={"message": "invalid token"})


def letters(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


class LogShipperDown(logging.Handler):
    """A handler whose every emit raises (the log shipper's endpoint is down)."""

    def emit(self, record: logging.LogRecord) -> None:
        raise RuntimeError("log shipper unreachable")


@pytest.fixture
def shipper_down() -> Iterator[None]:
    """The application ships the package's WARNING and ERROR records, and its shipper is down."""
    handler = LogShipperDown(level=logging.WARNING)
    package = logging.getLogger("billing_events")
    package.addHandler(handler)
    try:
        yield
    finally:
        package.removeHandler(handler)


# -- Metrics ----------------------------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="nothing calls metrics.watch_spool (sender_core.py:65 registers only watch_queue, and reports "
    "len(spool) as queue=memory): billing_events.spool.depth is never reported",
)
def test_a_spool_sender_reports_billing_events_spool_depth(
    reader: InMemoryMetricReader, tmp_path: Path
) -> None:
    """A user who set ``spool=`` and watches the README's ``billing_events.spool.depth`` (events held in a
    durable spool, not yet sent) sees no such metric at all while ``stats.in_spool`` says 7 events wait
    there; the 7 show up only as ``billing_events.queue.depth`` with ``billing_events.queue=memory``.
    They should see ``billing_events.spool.depth`` = 7 with ``billing_events.queue=spool``."""
    client = Togai("t", base_url="http://togai.test", transport=httpx.MockTransport(refused), retry=ONCE)
    sender = client.background(spool=tmp_path / "spool", flush_interval=60.0)
    try:
        for number in range(7):  # fewer than a batch: they wait for the flush interval
            sender.track(togai_event(number))
        assert sender.stats.in_spool == 7
        spool_depth = points(reader, "billing_events.spool.depth")
        assert spool_depth == [({"billing_events.provider": "togai", "billing_events.queue": "spool"}, 7)], (
            spool_depth,
            points(reader, "billing_events.queue.depth"),
        )
    finally:
        sender.close(10)


class FakeClock:
    """Monotonic and perf_counter clocks that a rate-budget sleep moves forward instead of sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.lock = threading.Lock()

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def perf_counter(self) -> float:
        return time.perf_counter() + self.offset

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.offset += max(0.0, seconds)

    def time(self) -> float:
        return time.time() + self.offset


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="SyncDelivery._post (delivery.py:257) starts the duration clock before BatchPoster.post runs the "
    "request hooks, and the pacer's hook (pacing.py:318) waits for the rate budget there",
)
def test_request_duration_leaves_out_the_wait_for_rate_budget(
    reader: InMemoryMetricReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a pace of one request every 5 s, the third request waits about 5 s for its slot (recorded in
    ``billing_events.rate_budget.wait.duration``) and the server answers it at once. The user's
    ``http.client.request.duration`` then shows a 5-second HTTP request: the local pacing counted twice,
    once as a wait and once as server latency. It should show only the request itself (here: well under
    a second), as the semantic conventions' HTTP client duration does."""
    clock = FakeClock()
    for module in (pacing_module, budgets_module, delivery_module):
        monkeypatch.setattr(module, "time", clock)  # the budget's waits pass on the fake clock, not the wall
    answered = httpx.MockTransport(lambda request: httpx.Response(202, json={"success": True}))
    client = Togai(
        "t", base_url="http://togai.test", transport=answered, max_requests_per_second=0.2, max_batch_events=1
    )
    report = client.send([togai_event(number) for number in range(3)])  # two go at once (the burst)
    assert report.counts[OutcomeStatus.DELIVERED] == 3
    [(_, waits)] = points(reader, "billing_events.rate_budget.wait.duration")
    assert waits.sum >= 4.0  # the third request waited for its slot
    [(_, durations)] = points(reader, "http.client.request.duration")
    assert durations.count == 3
    assert durations.max < 1.0, f"an instant answer recorded as a {durations.max:.1f} s request"


# -- A logging handler that raises ------------------------------------------------------------------


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="OutcomeSink._dispatch (deadletter.py:377) logs before it writes dead letters, unguarded; the "
    "raise reaches BackgroundSender._run, whose log.exception (background.py:288) raises again and ends "
    "the only worker thread; close() then finds no live thread and abandons nothing (background.py:227)",
)
def test_a_raising_log_handler_does_not_stop_the_background_sender(
    tmp_path: Path, shipper_down: None
) -> None:
    """The first undelivered batch's WARNING raises in the user's handler: the worker thread dies, the
    batch gets no dead letters, and every event tracked later stays queued for ever: ``close()`` returns
    stats with 6 enqueued, 3 settled and 3 still in the queue, and those 3 are nowhere (no outcome, no dead
    letter). Every tracked event should end in one outcome counter and every failed one in a dead letter,
    whatever the application's log handlers do."""
    dead = tmp_path / "dead.jsonl"
    client = Togai(
        "t",
        base_url="http://togai.test",
        transport=httpx.MockTransport(refused),
        retry=ONCE,
        dead_letter_path=dead,
    )
    sender = client.background(flush_interval=0.01)
    for number in range(3):
        sender.track(togai_event(number))
    sender.flush(5)
    for number in range(3, 6):
        sender.track(togai_event(number))
    stats = sender.close(5)
    assert (stats.enqueued, stats.failed, stats.in_queue) == (6, 6, 0), stats
    assert len(letters(dead)) == 6


@pytest.mark.xfail(
    strict=True,
    raises=RuntimeError,
    reason="OutcomeSink._dispatch (deadletter.py:377) logs the batch WARNING before it writes the dead letters, "
    "and nothing guards the logging call: the handler's exception leaves send() instead",
)
def test_a_raising_log_handler_does_not_cost_send_its_report_or_dead_letters(
    tmp_path: Path, shipper_down: None
) -> None:
    """``send()`` of 3 events that Togai refuses (401) raises the log handler's ``RuntimeError`` instead of
    returning the report, and the 3 failed events are never written to the dead-letter file: a replay
    cannot find them. ``send()`` should return its report (3 failed) and the file should hold 3 letters."""
    dead = tmp_path / "dead.jsonl"
    client = Togai(
        "t",
        base_url="http://togai.test",
        transport=httpx.MockTransport(refused),
        retry=ONCE,
        dead_letter_path=dead,
    )
    try:
        report = client.send([togai_event(number) for number in range(3)])
    finally:
        written = letters(dead)
    assert report.counts[OutcomeStatus.FAILED] == 3
    assert [letter["status"] for letter in written] == ["failed"] * 3


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="AsyncBackgroundSender._record (aio_background.py:366) calls _recorded only when _store returned: "
    "a raising log handler leaves the batch in _recording, and flush() waits on it until its timeout",
)
def test_a_raising_log_handler_does_not_make_async_flush_wait_in_vain(
    tmp_path: Path, shipper_down: None
) -> None:
    """With the asyncio sender, 3 events refused by Togai are counted failed, yet ``await flush(1)`` waits
    its whole timeout and returns False, and no dead letter is written. It should return True once the
    3 events are settled, with their 3 dead letters written."""
    dead = tmp_path / "dead.jsonl"

    async def answer(request: httpx.Request) -> httpx.Response:
        return refused(request)

    async def run() -> tuple[bool, int]:
        client = AsyncTogai(
            "t",
            base_url="http://togai.test",
            transport=httpx.MockTransport(answer),
            retry=ONCE,
            dead_letter_path=dead,
        )
        sender = client.background(flush_interval=0.01)
        for number in range(3):
            sender.track(togai_event(number))
        flushed = await sender.flush(1)
        failed = (await sender.close(5)).failed
        await client.http.aclose()
        return flushed, failed

    flushed, failed = asyncio.run(run())
    assert failed == 3
    assert flushed
    assert len(letters(dead)) == 3
