"""OpenTelemetry metrics, read back through the SDK's in-memory reader.

The counts must match what the client itself reports, for runs through the real mock
server while it injects faults: events by outcome against the report (or the sender's
stats), retries against ``Stats.retried``, and requests by status against a transport
that counts what really went over the wire.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
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
    Stats,
    Togai,
    metrics,
)
from billing_events.mock import create_app
from billing_events.mock.testing import serve_in_thread

from .scripted import Scripted, lago_event, lago_ok, togai_event

TOKEN = "test-token"
N = 240
BATCH = 20
POLICY = RetryPolicy(max_attempts=12, deadline=60, initial_delay=0.001, max_delay=0.01, max_retry_after=0.01)
FAULTS = {"rate_429": 0.15, "rate_503": 0.1, "rate_drop": 0.1, "rate_lost_response": 0.1, "seed": 3}
CLIENTS = {"togai": Togai, "lago": Lago}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve_in_thread(create_app()) as url:
        yield url


def points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    """Every data point by metric name: (attributes, value), the value a sum or a histogram point."""
    found: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = point if hasattr(point, "bucket_counts") else point.value
                    found.setdefault(metric.name, []).append((dict(point.attributes or {}), value))
    return found


def units(reader: InMemoryMetricReader) -> dict[str, str]:
    data = reader.get_metrics_data()
    return {
        metric.name: metric.unit
        for resource in (data.resource_metrics if data else ())
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def by(found: dict[str, list[tuple[dict[str, Any], Any]]], name: str, attribute: str) -> dict[Any, Any]:
    counted: Counter[Any] = Counter()
    for attributes, value in found.get(name, []):
        counted[attributes.get(attribute)] += value
    return dict(counted)


class CountingTransport(httpx.HTTPTransport):
    """What really went over the wire: each request's status, or the error it ended with."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[int | str] = Counter()
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = super().handle_request(request)
            body = response.read()  # an answer cut short (a lost response) is an error, not a status
        except Exception as exc:
            self.count(type(exc).__qualname__)
            raise
        self.count(response.status_code)
        return httpx.Response(response.status_code, headers=response.headers, content=body)

    def count(self, seen: int | str) -> None:
        with self._lock:
            self.seen[seen] += 1


class AsyncCounting(httpx.AsyncHTTPTransport):
    """``CountingTransport`` for asyncio, counting into the same tally."""

    def __init__(self, tally: CountingTransport) -> None:
        super().__init__()
        self.tally = tally

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await super().handle_async_request(request)
            body = await response.aread()
        except Exception as exc:
            self.tally.count(type(exc).__qualname__)
            raise
        self.tally.count(response.status_code)
        return httpx.Response(response.status_code, headers=response.headers, content=body)


def events(provider: str) -> list[dict[str, Any]]:
    made = [togai_event(n) if provider == "togai" else lago_event(n) for n in range(N)]
    for bad in (5, 77):
        made[bad]["code" if provider == "lago" else "schemaName"] = ""  # refused by the spec check
    return made


def base_url(server: str, provider: str) -> str:
    return f"{server}/togai" if provider == "togai" else f"{server}/lago/api/v1"


Counts = tuple[dict[str, int], int]
"""The counts by outcome the client itself reports, and the events it retried."""

NAMES = ("delivered", "duplicate", "rejected", "failed", "unknown", "dropped")


def from_stats(stats: Stats) -> Counts:
    assert stats.settled == N
    return {name: getattr(stats, name) for name in NAMES if getattr(stats, name)}, stats.retried


def run_sync(provider: str, url: str, wire: CountingTransport) -> Counts:
    with CLIENTS[provider](
        TOKEN, base_url=url, retry=POLICY, max_batch_events=BATCH, transport=wire
    ) as client:
        report = client.send(events(provider))
        assert len(report) == N
        return {
            status.value: amount for status, amount in report.counts.items() if amount
        }, client.stats.retried


def run_background(provider: str, url: str, wire: CountingTransport) -> Counts:
    with CLIENTS[provider](
        TOKEN, base_url=url, retry=POLICY, max_batch_events=BATCH, transport=wire
    ) as client:
        sender = client.background(flush_interval=0.01, workers=2)
        for event in events(provider):
            sender.track(event)
        return from_stats(sender.close(timeout=60))


def run_async_background(provider: str, url: str, wire: CountingTransport) -> Counts:
    make = AsyncTogai if provider == "togai" else AsyncLago

    async def run() -> Stats:
        async with make(
            TOKEN, base_url=url, retry=POLICY, max_batch_events=BATCH, transport=AsyncCounting(wire)
        ) as client:
            sender = client.background(flush_interval=0.01)
            for event in events(provider):
                sender.track(event)
            return await sender.close(timeout=60)

    return from_stats(asyncio.run(run()))


MODES = {"sync": run_sync, "background": run_background, "asyncio-background": run_async_background}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("provider", ["togai", "lago"])
def test_counts_match_the_report_under_faults(
    reader: InMemoryMetricReader, server: str, provider: str, mode: str
) -> None:
    httpx.post(f"{server}/_mock/reset").raise_for_status()
    httpx.put(f"{server}/_mock/faults", json=FAULTS).raise_for_status()
    wire = CountingTransport()
    try:
        counts, retried_by_stats = MODES[mode](provider, base_url(server, provider), wire)
    finally:
        httpx.put(f"{server}/_mock/faults", json={name: 0.0 for name in FAULTS if name != "seed"})
    found = points(reader)

    # Events by outcome: exactly what the report says, for this provider only.
    assert by(found, "billing_events.events", "billing_events.outcome") == counts
    assert counts["rejected"] == 2
    assert {attributes["billing_events.provider"] for attributes, _ in found["billing_events.events"]} == {
        provider
    }
    # Retries: the events sent again after a wait, as the stats count them.
    retried = sum(value for _, value in found.get("billing_events.events.retried", []))
    assert retried > 0
    assert retried == retried_by_stats
    # Requests: by status code, or by the transport error, exactly as the wire saw them.
    statuses = Counter(by(found, "billing_events.requests", "http.response.status_code"))
    errors = by(found, "billing_events.requests", "error.type")
    answered = {key: value for key, value in wire.seen.items() if isinstance(key, int)}
    assert {key: value for key, value in statuses.items() if key is not None} == answered
    assert 429 in answered and 503 in answered
    assert errors.get("429") == answered[429]
    failed_on_wire = sum(value for key, value in wire.seen.items() if isinstance(key, str))
    assert failed_on_wire > 0
    assert statuses[None] == failed_on_wire  # a request with no answer has no status, only an error.type
    # The duration histogram holds one point per request, with the server's address.
    durations = found["http.client.request.duration"]
    assert sum(point.count for _, point in durations) == sum(wire.seen.values())
    assert all(attributes["server.address"] == "127.0.0.1" for attributes, _ in durations)
    assert all(attributes["http.request.method"] == "POST" for attributes, _ in durations)
    assert units(reader)["http.client.request.duration"] == "s"


def queue_depth(reader: InMemoryMetricReader, provider: str) -> int:
    return sum(
        value
        for attributes, value in points(reader).get("billing_events.queue.depth", [])
        if attributes == {"billing_events.provider": provider, "billing_events.queue": "memory"}
    )


def test_queue_depth_is_read_when_collected(reader: InMemoryMetricReader) -> None:
    script = Scripted(default=lago_ok)
    before = queue_depth(reader, "lago")  # senders of other tests may still be alive, their queues empty
    with Lago(TOKEN, base_url="http://lago.test/api/v1", transport=script.transport()) as client:
        sender = client.background(flush_interval=600)  # nothing leaves until close()
        for n in range(7):
            sender.track(lago_event(n))
        assert queue_depth(reader, "lago") == before + 7
        assert sender.close(timeout=10).delivered == 7
    assert queue_depth(reader, "lago") == before


def test_spool_depth_and_rate_budget_hooks(reader: InMemoryMetricReader) -> None:
    class Spool:
        def __init__(self) -> None:
            self.held = 12

    spool = Spool()
    metrics.watch_spool(spool, "togai", lambda owner: owner.held)
    metrics.rate_budget_waited("togai", 0.25)
    metrics.rate_budget_waited("togai", 0.5)
    found = points(reader)
    assert found["billing_events.spool.depth"] == [
        ({"billing_events.provider": "togai", "billing_events.queue": "spool"}, 12)
    ]
    [(attributes, point)] = found["billing_events.rate_budget.wait.duration"]
    assert attributes == {"billing_events.provider": "togai"}
    assert (point.count, point.sum) == (2, 0.75)
    metrics.unwatch(spool)
    assert sum(value for _, value in points(reader).get("billing_events.spool.depth", [])) == 0


def test_the_pacer_reports_its_waits(reader: InMemoryMetricReader) -> None:
    server = Scripted(default=lambda request: httpx.Response(202, json={"success": True}))
    with Togai(
        TOKEN,
        base_url="http://togai.local",
        transport=server.transport(),
        max_requests_per_second=20,
        max_batch_events=1,
    ) as client:
        assert client.send([togai_event(n) for n in range(30)]).ok
        waited = client.stats.budget_wait
    [(attributes, point)] = points(reader)["billing_events.rate_budget.wait.duration"]
    assert attributes == {"billing_events.provider": "togai"}
    assert waited > 0
    assert point.sum == pytest.approx(waited, abs=0.01)


def test_find_event_is_a_get_request_by_status(reader: InMemoryMetricReader) -> None:
    def missing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"status": 404, "error": "Not Found", "code": "event_not_found"})

    script = Scripted(default=missing)
    with (
        Lago(TOKEN, base_url="http://lago.test/api/v1", transport=script.transport()) as client,
        pytest.raises(NotFoundError, match="event_not_found"),
    ):
        client.find_event("nope")
    [(attributes, value)] = points(reader)["billing_events.requests"]
    assert value == 1
    assert attributes["http.request.method"] == "GET"
    assert attributes["http.response.status_code"] == 404
    assert attributes["error.type"] == "404"
    assert attributes["server.address"] == "lago.test"
    assert attributes["server.port"] == 80


def test_without_an_sdk_nothing_is_recorded_and_nothing_breaks() -> None:
    # The API's global provider is a no-op until an SDK is set; the hooks must be safe to call.
    metrics.use_meter_provider(None)
    script = Scripted(default=lago_ok)
    with Lago(TOKEN, base_url="http://lago.test/api/v1", transport=script.transport()) as client:
        report = client.send([lago_event(n) for n in range(3)])
    assert report.counts[OutcomeStatus.DELIVERED] == 3


def test_without_the_extra_the_library_works_and_names_the_extra() -> None:
    program = """
import sys
sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
import httpx
from billing_events import Togai, metrics
answer = lambda request: httpx.Response(202, json={"success": True})
with Togai("test-token-123", base_url="http://togai.test", transport=httpx.MockTransport(answer)) as togai:
    report = togai.send([{"schemaName": "s", "timestamp": "2024-05-01T10:15:30Z", "accountId": "a",
                          "attributes": [], "dimensions": {}}])
    sender = togai.background()
    sender.track({"schemaName": "s", "timestamp": "2024-05-01T10:15:30Z", "accountId": "a",
                  "attributes": [], "dimensions": {}})
    assert sender.close(10).delivered == 1
print(report.ok)
try:
    metrics.use_meter_provider(None)
except ImportError as exc:
    print(exc)
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "True",
        'billing_events.metrics needs the "otel" extra: pip install "billing-events[otel]"',
    ]


def test_an_sdk_installed_after_the_import_receives_the_counts() -> None:
    # What an application does: import the library, later install the SDK as the global provider.
    program = """
import httpx
from billing_events import Togai
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

answer = lambda request: httpx.Response(202, json={"success": True})
event = {"schemaName": "s", "timestamp": "2024-05-01T10:15:30Z", "accountId": "a",
         "attributes": [], "dimensions": {}}
with Togai("test-token-123", base_url="http://togai.test", transport=httpx.MockTransport(answer)) as togai:
    togai.send([event])  # before the SDK: recorded nowhere
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    togai.send([event, event, {**event, "schemaName": ""}])
for resource in reader.get_metrics_data().resource_metrics:
    for scope in resource.scope_metrics:
        for metric in scope.metrics:
            if metric.name == "billing_events.events":
                for point in sorted(metric.data.data_points, key=lambda p: p.value):
                    print(point.attributes["billing_events.outcome"], point.value)
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["rejected 1", "delivered 2"]
