"""Run one send() against a URL in a fresh process; print its outcomes and peak memory as JSON.

A separate process, so that the peak resident size is the client's alone.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from billing_events import Lago, RetryPolicy, Togai


def peak_mb() -> float:
    """This process's peak resident size (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(provider: str, url: str, token: str) -> None:
    client_type = Togai if provider == "togai" else Lago
    policy = RetryPolicy(max_attempts=2, deadline=30.0, initial_delay=0.01, max_delay=0.01)
    event = (
        {
            "schemaName": "s",
            "timestamp": "2024-05-01T12:00:00Z",
            "accountId": "a",
            "attributes": [],
            "dimensions": {},
        }
        if provider == "togai"
        else {"external_subscription_id": "sub", "code": "api_calls", "timestamp": 1714564800}
    )
    started = time.monotonic()
    with client_type(token, base_url=url, timeout=10.0, retry=policy) as client:
        report = client.send([event])
    print(
        json.dumps(
            {
                "statuses": [outcome.status.value for outcome in report],
                "reasons": [outcome.reason for outcome in report],
                "seconds": time.monotonic() - started,
                "peak_mb": peak_mb(),
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
