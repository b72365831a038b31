"""Cost of ``track()`` on the caller's thread while the background worker sends to the sink.

Run as ``python -m bench.track_cost BASE_URL``; prints one JSON object. The
queue is sized so it never fills (a full queue would measure the block policy,
not ``track()``), and the worker keeps sending to the sink during the whole
measurement.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from array import array

import orjson

from bench.throughput import NO_PACING, TOKEN, event_pool
from billing_events import Togai

CALLS = 200_000
WARM_UP = 10_000


def measure(base_url: str, calls: int = CALLS) -> dict[str, float]:
    pool = event_pool("togai")
    clock = time.perf_counter_ns
    overhead = min(-clock() + clock() for _ in range(10_000))
    samples = array("q")
    with Togai(TOKEN, base_url=base_url, **NO_PACING) as client:
        sender = client.background(max_queue_events=calls + WARM_UP, max_queue_bytes=1 << 30)
        for index in range(WARM_UP):
            sender.track(pool[index % len(pool)])
        sender.flush(60)
        gc.collect()
        for index in range(calls):
            event = pool[index % len(pool)]
            started = clock()
            sender.track(event)
            samples.append(clock() - started - overhead)
        flushed = sender.flush(120)
        stats = sender.stats
        sender.close(30)
    ordered = sorted(samples)
    return {
        "calls": calls,
        "median_us": statistics.median(ordered) / 1000,
        "p99_us": ordered[int(len(ordered) * 0.99)] / 1000,
        "p999_us": ordered[int(len(ordered) * 0.999)] / 1000,
        "max_us": ordered[-1] / 1000,
        "timer_overhead_ns": overhead,
        "delivered": stats.delivered,
        "flushed": flushed,
    }


if __name__ == "__main__":
    sys.stdout.write(orjson.dumps(measure(sys.argv[1])).decode() + "\n")
