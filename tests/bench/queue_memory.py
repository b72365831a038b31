"""Peak memory of the background queue when 1,000,000 events are tracked under a byte bound.

Run as ``python -m bench.queue_memory``; prints one JSON object. The worker is
blocked: the server is a socket that accepts connections into its backlog but
never answers, so the first batch hangs in flight and everything after it
stays queued until the byte bound is reached; the rest is dropped (policy
``drop``). Each event is a fresh object, as in an application that builds its
events as it goes. The process exits without closing the sender, which would
wait for the hung request.
"""

from __future__ import annotations

import gc
import os
import socket
import sys

import orjson
import psutil  # type: ignore[import-untyped]

from bench.throughput import TOKEN, event_pool
from billing_events import Togai

EVENTS = 1_000_000
BOUND = 64 * 1024 * 1024


def measure(events: int = EVENTS, bound: int = BOUND) -> dict[str, float]:
    black_hole = socket.socket()
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(1024)
    port = black_hole.getsockname()[1]
    templates = [orjson.dumps(event) for event in event_pool("togai", 1000)]
    client = Togai(TOKEN, base_url=f"http://127.0.0.1:{port}/togai", timeout=3600)
    sender = client.background(
        max_queue_events=2 * events, max_queue_bytes=bound, on_full="drop", flush_interval=0.05
    )
    gc.collect()
    process = psutil.Process()
    rss_before = process.memory_info().rss
    peak = rss_before
    payload_bytes = 0
    for index in range(events):
        event = orjson.loads(templates[index % len(templates)])
        sender.track(event)
        if index < 10_000:
            payload_bytes += len(orjson.dumps(event))
        if index % 5_000 == 0:
            peak = max(peak, process.memory_info().rss)
    stats = sender.stats
    rss_after = process.memory_info().rss
    peak = max(peak, rss_after)
    return {
        "events_tracked": events,
        "queued": stats.in_queue,
        "dropped": stats.dropped,
        "bound_mib": bound / 2**20,
        "mean_event_json_bytes": payload_bytes / min(events, 10_000),
        "rss_before_mib": rss_before / 2**20,
        "rss_after_mib": rss_after / 2**20,
        "peak_rss_mib": peak / 2**20,
        "peak_delta_mib": (peak - rss_before) / 2**20,
    }


if __name__ == "__main__":
    result = measure()
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()
    os._exit(0)
