"""A server's rate-limit headers steer the pace, but a value no provider would send cannot stop sending."""

from __future__ import annotations

import httpx

from billing_events import Lago
from overlay.scripted import lago_ok


def test_a_tiny_announced_limit_does_not_starve_the_client() -> None:
    def tiny(request: httpx.Request) -> httpx.Response:
        response = lago_ok(request)
        # One request every 100 s, were it believed: every later request would wait past its timeout.
        response.headers.update({"X-RateLimit-Limit": "0.01", "X-RateLimit-Remaining": "0"})
        return response

    with Lago("t", transport=httpx.MockTransport(tiny), endpoint="us", timeout=2) as client:
        events = [
            {"code": "c", "external_subscription_id": "s", "transaction_id": f"x{n}", "timestamp": 1714557600}
            for n in range(5)
        ]
        reports = [client.send([event]) for event in events]

    assert [outcome.status.value for report in reports for outcome in report] == ["delivered"] * 5
    assert client.stats.pace is not None and client.stats.pace >= 1
