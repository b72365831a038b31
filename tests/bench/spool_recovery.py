"""Recovery from a spool: how long a new sender takes to re-send what a killed one left, and bytes per event.

Run as ``python -m bench.spool_recovery BASE_URL [EVENTS]``; prints one JSON object. A child
process tracks ``EVENTS`` Togai events into a spool without sending them (no flush trigger is
reached) and is SIGKILLed; the spool directory's size is then divided by the event count. A
new sender on the directory adopts the file and sends everything to the sink: the time from
its construction to the end of ``close()`` is the recovery time.
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.throughput import TOKEN, event_pool
from billing_events import SpoolConfig, Togai

EVENTS = 1_000_000


def _fill(directory: str, base_url: str, events: int, ready: int) -> None:
    code = 1
    try:
        with Togai(TOKEN, base_url=base_url) as client:
            sender = client.background(
                spool=SpoolConfig(directory, max_bytes=1 << 34),
                flush_interval=3600,
                flush_at_events=10_000_000,
                flush_at_bytes=1 << 40,
                # The flush triggers are capped by the in-memory window: a window above the count keeps
                # the worker idle, so every event is still in the spool at the kill.
                max_queue_events=events + 1,
                max_queue_bytes=1 << 34,
            )
            pool = itertools.cycle(event_pool("togai"))
            for _ in range(events):
                sender.track(next(pool))
            os.write(ready, b"done\n")
            while True:
                signal.pause()
    finally:
        os._exit(code)


def _size(directory: str) -> int:
    return sum(path.stat().st_size for path in Path(directory).iterdir() if path.is_file())


def measure(base_url: str, events: int = EVENTS) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        read, write = os.pipe()
        started = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os.close(read)
            _fill(directory, base_url, events, write)
        os.close(write)
        with os.fdopen(read, "rb") as lines:
            if lines.readline() != b"done\n":
                raise RuntimeError("the filling process died")
        fill_seconds = time.perf_counter() - started
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        on_disk = _size(directory)
        started = time.perf_counter()
        with Togai(TOKEN, base_url=base_url) as client:
            sender = client.background(spool=SpoolConfig(directory, max_bytes=1 << 34), workers=2)
            adopted = time.perf_counter() - started  # at most 2 s: the keeper or flush() takes the rest
            if not sender.flush(3600):
                raise RuntimeError("recovery: flush timed out")
            stats = sender.close(60)
        seconds = time.perf_counter() - started
    if stats.delivered != events:
        raise RuntimeError(f"recovery delivered {stats.delivered} of {events}")
    return {
        "events": events,
        "fill_seconds": fill_seconds,
        "bytes_on_disk": on_disk,
        "bytes_per_event": on_disk / events,
        "adopt_seconds": adopted,
        "recovery_seconds": seconds,
        "events_per_second": events / seconds,
    }


if __name__ == "__main__":
    count = int(sys.argv[2]) if len(sys.argv) > 2 else EVENTS
    sys.stdout.write(orjson.dumps(measure(sys.argv[1], count)).decode() + "\n")
