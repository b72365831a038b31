"""Cost of one call on the caller's thread: our ``track()`` beside the senders users know.

Run as ``python -m bench.caller_cost ORIGIN ROW``; prints one JSON object. ``bench.run``
runs each row in a fresh interpreter, so no OpenTelemetry SDK or other sender's threads
carry over from one row to the next. Every row sends the same usage events (the Togai
pool: account, metric, attributes, dimensions) to the same sink while its own
background worker keeps sending; each call is timed on its own, the timer's overhead
removed. Queues are sized so they never fill (a full queue would measure dropping, not
the call), and the row checks afterwards that the sink received every event.

Rows:

- ``track``: ``BackgroundSender.track()`` of ``Togai``, no OpenTelemetry SDK (the API's no-op);
- ``track-metrics``: the same with an SDK ``MeterProvider`` whose reader collects every 100 ms;
- ``posthog``: module-level ``posthog.capture()`` (posthog-python, legacy ``/batch/`` endpoint);
- ``segment``: module-level ``analytics.track()`` (segment-analytics-python).
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from array import array
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import orjson

from bench.throughput import NO_PACING, TOKEN, event_pool

CALLS = {"track": 100_000, "track-metrics": 100_000, "posthog": 20_000, "segment": 20_000}
WARM_UP = 2_000
SINK_KEY = {"track": "togai", "track-metrics": "togai", "posthog": "posthog", "segment": "segment"}

# What each call does on the caller's thread that the others do not; read from each library's source.
DOES = {
    "track": "checks the event against the Togai spec, assigns the idempotency key, serializes it to JSON"
    " bytes and queues them under count and byte bounds; no per-call log line or metric",
    "track-metrics": "the same: metrics are counted per batch on the worker, and the queue depth is read"
    " only when the SDK collects",
    "posthog": "re-applies the module settings to the default client (setup()), merges system context"
    " ($python_version, OS) and $lib properties into a new dict, stamps a timestamp and a uuid4, copies"
    " and cleans the properties recursively, runs the before_send hook and two DEBUG log calls, and queues"
    " the dict; no schema check; JSON is made by the worker",
    "segment": "type-checks its arguments, stamps a timestamp and a uuid4 messageId, adds library context,"
    " copies and cleans the properties recursively, serializes the whole message with json.dumps only to"
    " check its 32 KB limit (the worker serializes it again), one DEBUG log call, and queues the dict;"
    " no schema check",
}


def sink_count(origin: str, key: str) -> int:
    count: int = httpx.get(f"{origin}/_sink/stats", timeout=5).json()["events"][key]
    return count


def timed(call: Callable[[int], object], calls: int) -> list[int]:
    """Nanoseconds per call, each timed alone, the timer's own overhead removed."""
    clock = time.perf_counter_ns
    overhead = min(-clock() + clock() for _ in range(10_000))
    for index in range(WARM_UP):
        call(index)
    gc.collect()
    samples = array("q")
    for index in range(calls):
        started = clock()
        call(index)
        samples.append(clock() - started - overhead)
    return sorted(samples)


def run_track(origin: str, calls: int, with_metrics: bool) -> tuple[list[int], dict[str, Any]]:
    extra: dict[str, Any] = {}
    reader = None
    if with_metrics:
        reader = _install_sdk()
    from billing_events import Togai

    pool = event_pool("togai")
    with Togai(TOKEN, base_url=f"{origin}/togai", **NO_PACING) as client:
        sender = client.background(max_queue_events=calls + WARM_UP, max_queue_bytes=1 << 30)
        samples = timed(lambda index: sender.track(pool[index % len(pool)]), calls)
        extra["flushed"] = sender.flush(120)
        sender.close(30)
    if reader is not None:
        extra["events_counted_by_metrics"] = _counted(reader)
    return samples, extra


def _install_sdk() -> Any:
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        InMemoryMetricReader,
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )

    class Discard(MetricExporter):
        """An exporter that drops what it gets: the cost measured is recording and collecting."""

        def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 10_000) -> bool:
            return True

        def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
            return None

    counted = InMemoryMetricReader()
    periodic = PeriodicExportingMetricReader(Discard(), export_interval_millis=100)
    metrics.set_meter_provider(MeterProvider(metric_readers=[periodic, counted]))
    return counted


def _counted(reader: Any) -> int:
    total = 0
    data = reader.get_metrics_data()
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "billing_events.events":
                    total += sum(point.value for point in metric.data.data_points)
    return total


def _properties(event: dict[str, Any]) -> dict[str, Any]:
    """The Togai event's content as analytics properties: its attributes and dimensions."""
    properties: dict[str, Any] = {item["name"]: item["value"] for item in event["attributes"]}
    properties.update(event["dimensions"])
    return properties


def run_posthog(origin: str, calls: int) -> tuple[list[int], dict[str, Any]]:
    import posthog

    pool = [(event["accountId"], event["schemaName"], _properties(event)) for event in event_pool("togai")]
    posthog.api_key = "phc_bench"
    posthog.host = f"{origin}/posthog"
    # The module-level client, made here only to give it a queue that never fills.
    posthog.default_client = posthog.Posthog(
        "phc_bench", host=f"{origin}/posthog", max_queue_size=calls + WARM_UP
    )

    def call(index: int) -> object:
        account, name, properties = pool[index % len(pool)]
        return posthog.capture(name, distinct_id=account, properties=properties)

    samples = timed(call, calls)
    posthog.flush()
    posthog.shutdown()
    return samples, {}


def run_segment(origin: str, calls: int) -> tuple[list[int], dict[str, Any]]:
    import segment.analytics as analytics

    pool = [(event["accountId"], event["schemaName"], _properties(event)) for event in event_pool("togai")]
    analytics.write_key = "bench"
    analytics.host = f"{origin}/segment"
    analytics.max_queue_size = calls + WARM_UP

    def call(index: int) -> object:
        account, name, properties = pool[index % len(pool)]
        return analytics.track(user_id=account, event=name, properties=properties)

    samples = timed(call, calls)
    analytics.flush()
    analytics.shutdown()
    return samples, {}


def measure(origin: str, row: str) -> dict[str, Any]:
    calls = CALLS[row]
    before = sink_count(origin, SINK_KEY[row])
    if row in ("track", "track-metrics"):
        samples, extra = run_track(origin, calls, with_metrics=row == "track-metrics")
    elif row == "posthog":
        samples, extra = run_posthog(origin, calls)
    else:
        samples, extra = run_segment(origin, calls)
    received = sink_count(origin, SINK_KEY[row]) - before
    return {
        "row": row,
        "calls": calls,
        "median_us": statistics.median(samples) / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
        "sink_received": received,
        "sent": calls + WARM_UP,
        "does": DOES[row],
        **extra,
    }


def main(argv: Sequence[str]) -> None:
    sys.stdout.write(orjson.dumps(measure(argv[0], argv[1])).decode() + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
