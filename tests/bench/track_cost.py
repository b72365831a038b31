"""Cost of ``track()`` on the caller's thread while the background worker sends to the sink.

Run as ``python -m bench.track_cost BASE_URL [DURABILITY]``; prints one JSON object. The
queue is sized so it never fills (a full queue would measure the block policy,
not ``track()``), and the worker keeps sending to the sink during the whole
measurement. With a durability (``os``, ``group``, ``sync``), the sender spools to
a temporary directory; ``sync`` makes fewer calls (each one waits for an fsync).
"""

from __future__ import annotations

import gc
import statistics
import sys
import tempfile
import time
from array import array
from typing import Any

import orjson

from bench.throughput import NO_PACING, TOKEN, event_pool
from billing_events import SpoolConfig, Togai

CALLS = 200_000
WARM_UP = 10_000


SYNC_CALLS = 5_000


def measure(base_url: str, calls: int = CALLS, durability: str | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        spool = (
            None if durability is None else SpoolConfig(directory, max_bytes=1 << 31, durability=durability)
        )  # type: ignore[arg-type]
        return _measure(base_url, SYNC_CALLS if durability == "sync" else calls, spool)


def _measure(base_url: str, calls: int, spool: SpoolConfig | None) -> dict[str, Any]:
    pool = event_pool("togai")
    clock = time.perf_counter_ns
    overhead = min(-clock() + clock() for _ in range(10_000))
    samples = array("q")
    with Togai(TOKEN, base_url=base_url, **NO_PACING) as client:
        sender = client.background(max_queue_events=calls + WARM_UP, max_queue_bytes=1 << 30, spool=spool)
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
        "durability": spool.durability if spool is not None else "in memory",
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
    durability = sys.argv[2] if len(sys.argv) > 2 else None
    sys.stdout.write(orjson.dumps(measure(sys.argv[1], durability=durability)).decode() + "\n")
