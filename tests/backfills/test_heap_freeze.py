"""send_partition run in the caller's own process (Dask's threaded scheduler, a local run) must not
keep the caller's objects alive for good."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from backfills.support import TOKEN, Mock

SCRIPT = """
import sys, weakref
from billing_events.backfill import Backfill, send_partition
from billing_events import RetryPolicy

class Cache:
    pass

cache = Cache()
cache.me = cache  # the caller's own object, in a reference cycle, alive while the backfill runs
alive = weakref.ref(cache)
backfill = Backfill(
    "lago",
    sys.argv[2],
    client_options={"token": sys.argv[3], "base_url": sys.argv[1], "timeout": 10,
                    "retry": RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.1, deadline=10)},
).prepare()
rows = [{"external_subscription_id": "sub", "code": "api_calls", "prop.n": n} for n in range(3)]
summary = send_partition(rows, backfill)
assert summary["delivered"] == 3, summary
del cache
import gc
gc.collect()
print("kept" if alive() is not None else "freed")
"""


def test_a_partition_sent_in_the_callers_process_leaves_its_cycles_collectable(
    mock: Mock, tmp_path: Path
) -> None:
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, mock.url("lago"), str(tmp_path / "ckpt"), TOKEN],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert run.stdout.strip() == "freed"
