"""Review r31 of stats, metrics and logging: defects found there, each test failing before its fix.

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

from billing_events import (
    AsyncLago,
    AsyncTogai,
    Lago,
    NotFoundError,
    OutcomeStatus,
    RetryPolicy,
    SpoolConfig,
    Togai,
)
from billing_events import _network as network_module
from billing_events import background as background_module
from billing_events import budgets as budgets_module
from billing_events import delivery as delivery_module
from billing_events import metrics as metrics_module
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


def test_request_duration_leaves_out_the_wait_for_rate_budget(
    reader: InMemoryMetricReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a pace of one request every 5 s, the third request waits about 5 s for its slot (recorded in
    ``billing_events.rate_budget.wait.duration``) and the server answers it at once. The user's
    ``http.client.request.duration`` then shows a 5-second HTTP request: the local pacing counted twice,
    once as a wait and once as server latency. It should show only the request itself (here: well under
    a second), as the semantic conventions' HTTP client duration does."""
    clock = FakeClock()
    # The budget's waits pass on the fake clock, not the wall, and so does the request's duration: it was
    # timed in delivery, and is timed by the transport's Progress (_network) now. raising=False: delivery
    # keeps no clock of its own any more, and the test must still fail where it did.
    for module in (pacing_module, budgets_module, delivery_module, network_module):
        monkeypatch.setattr(module, "time", clock, raising=False)
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


def not_found(request: httpx.Request) -> httpx.Response:
    return httpx.Response(404, json={"status": 404, "error": "Not Found", "code": "event_not_found"})


async def async_not_found(request: httpx.Request) -> httpx.Response:
    return not_found(request)


async def async_accepted(request: httpx.Request) -> httpx.Response:
    return httpx.Response(202, json={"success": True})


@pytest.mark.parametrize("path", ["sync find_event", "async find_event", "async send"])
def test_request_duration_starts_when_the_request_leaves_on_every_path(
    reader: InMemoryMetricReader, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    """The other paths than the sync batch: a request hook that holds the request back 30 s (as the pacer's
    wait for the rate budget does) is no part of ``http.client.request.duration``, for Lago's find_event
    (sync and async; estimate_fees goes through the same meter) and for the async batch post."""
    clock = FakeClock()
    # Every clock a request's duration was or is read from (delivery, the meter, the transport's Progress).
    for module in (delivery_module, metrics_module, network_module):
        monkeypatch.setattr(module, "time", clock, raising=False)

    def held_back(request: httpx.Request) -> None:
        clock.sleep(30.0)

    async def async_held_back(request: httpx.Request) -> None:
        clock.sleep(30.0)

    if path == "sync find_event":
        lago = Lago(
            "t", base_url="http://lago.test/api/v1", transport=httpx.MockTransport(not_found), retry=ONCE
        )
        lago.http.event_hooks["request"].append(held_back)
        with pytest.raises(NotFoundError):
            lago.find_event("txn-1")
    else:

        async def run() -> None:
            if path == "async find_event":
                client = AsyncLago(
                    "t",
                    base_url="http://lago.test/api/v1",
                    transport=httpx.MockTransport(async_not_found),
                    retry=ONCE,
                )
                client.http.event_hooks["request"].append(async_held_back)
                with pytest.raises(NotFoundError):
                    await client.find_event("txn-1")
            else:
                togai = AsyncTogai(
                    "t",
                    base_url="http://togai.test",
                    transport=httpx.MockTransport(async_accepted),
                    retry=ONCE,
                )
                togai.http.event_hooks["request"].append(async_held_back)
                report = await togai.send([togai_event(number) for number in range(3)])
                assert report.counts[OutcomeStatus.DELIVERED] == 3
                client = togai
            await client.http.aclose()

        asyncio.run(run())
    assert clock.offset >= 30.0  # the hook ran
    [(_, durations)] = points(reader, "http.client.request.duration")
    assert durations.count == 1
    assert durations.max < 1.0, f"an instant answer recorded as a {durations.max:.1f} s request"


# -- A logging handler that raises ------------------------------------------------------------------


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


@pytest.mark.filterwarnings(
    "ignore::pytest.PytestUnhandledThreadExceptionWarning"
)  # the worker dies on purpose
def test_close_accounts_for_what_a_dead_worker_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker thread that dies anyway (here: a transport raising SystemExit, then its own error path
    failing) leaves its batch in flight. ``close()`` finds no live worker: it must still settle those
    events (``unknown``: their request had gone out) and dead-letter them, not return stats that account
    for none of them."""

    def exits(request: httpx.Request) -> httpx.Response:
        raise SystemExit(3)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the worker's error path fails too")

    monkeypatch.setattr(background_module, "settle_unsent", broken)
    dead = tmp_path / "dead.jsonl"
    client = Togai(
        "t",
        base_url="http://togai.test",
        transport=httpx.MockTransport(exits),
        retry=ONCE,
        dead_letter_path=dead,
    )
    sender = client.background(flush_interval=60.0)
    for number in range(3):
        sender.track(togai_event(number))
    [worker] = sender._threads
    sender._wake.set()
    worker.join(5)
    assert not worker.is_alive()
    stats = sender.close(5)
    assert (stats.enqueued, stats.unknown, stats.in_queue) == (3, 3, 0), stats
    assert [letter["status"] for letter in letters(dead)] == ["unknown"] * 3


@pytest.mark.parametrize("raise_exceptions", [True, False])
def test_a_raising_log_handler_is_reported_as_logging_reports_its_own_handlers(
    tmp_path: Path,
    shipper_down: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    raise_exceptions: bool,
) -> None:
    """The handler's error is not lost either: like a standard handler's (``Handler.handleError``), it is
    printed to stderr while ``logging.raiseExceptions`` is true, and nothing is printed otherwise."""
    monkeypatch.setattr(logging, "raiseExceptions", raise_exceptions)
    client = Togai("t", base_url="http://togai.test", transport=httpx.MockTransport(refused), retry=ONCE)
    assert client.send([togai_event(0)]).counts[OutcomeStatus.FAILED] == 1
    printed = capsys.readouterr().err
    assert ("log shipper unreachable" in printed) is raise_exceptions


def test_a_guarded_log_record_still_names_the_code_that_logged_it(caplog: pytest.LogCaptureFixture) -> None:
    """Routing the sink's records through the guard does not move their ``filename``/``funcName`` (which
    formatters show) to the guard itself."""
    client = Togai("t", base_url="http://togai.test", transport=httpx.MockTransport(refused), retry=ONCE)
    with caplog.at_level(logging.WARNING, logger="billing_events"):
        client.send([togai_event(0)])
    [record] = [record for record in caplog.records if record.name == "billing_events.outcomes"]
    assert (record.filename, record.funcName) == ("deadletter.py", "_log_dead")


def test_a_raising_log_handler_does_not_make_a_spool_sender_s_close_raise(
    tmp_path: Path, shipper_down: None
) -> None:
    """``close()`` past its deadline leaves a spooled sender's events in the spool and logs a WARNING saying
    so. With the application's handler raising, that WARNING came out of ``close()`` as its exception. It
    should return the stats (the events still in the spool, for the next sender)."""
    answer = threading.Event()

    def slow(request: httpx.Request) -> httpx.Response:
        answer.wait(10)
        return httpx.Response(202, json={"success": True})

    client = Togai("t", base_url="http://togai.test", transport=httpx.MockTransport(slow), retry=ONCE)
    sender = client.background(flush_interval=0.01, spool=SpoolConfig(tmp_path / "spool"))
    try:
        for number in range(3):
            sender.track(togai_event(number))
        stats = sender.close(0.2)
    finally:
        answer.set()
    assert stats.in_spool == 3, stats
