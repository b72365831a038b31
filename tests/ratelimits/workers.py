"""What each sending process of the pacing tests runs: one client, one sending path, a report back."""

from __future__ import annotations

import asyncio
import multiprocessing.synchronize
from collections import Counter
from typing import Any

from overlay.scripted import lago_event, togai_event

from billing_events import AsyncLago, AsyncTogai, Lago, RetryPolicy, Togai

TOKEN = "test-token"
# Generous retries: a throttled request is retried after Retry-After (1 s at the mock).
POLICY = RetryPolicy(max_attempts=20, deadline=60, initial_delay=0.05, max_delay=1.0, max_retry_after=2.0)


def make_events(provider: str, worker: int, count: int) -> list[dict[str, Any]]:
    if provider == "togai":
        return [togai_event(n, id=f"w{worker}-{n}") for n in range(count)]
    return [lago_event(n, transaction_id=f"w{worker}-{n}") for n in range(count)]


def _options(pace: float | None, budget: str | None, batch: int) -> dict[str, Any]:
    return {
        "retry": POLICY,
        "max_batch_events": batch,
        "max_requests_per_second": pace,
        "rate_budget": budget,
    }


def _send(kind: str, provider: str, url: str, events: list[dict[str, Any]], options: dict[str, Any]) -> Any:
    """Send with one of the client's paths; the statuses counted, and the client's stats."""
    statuses: Counter[str] = Counter()
    if kind in ("send", "thread"):
        sync_cls = Togai if provider == "togai" else Lago
        with sync_cls(TOKEN, base_url=url, **options) as client:
            if kind == "send":
                statuses.update(outcome.status.value for outcome in client.send(events))
            else:
                sender = client.background(
                    flush_interval=0.05, on_outcome=lambda o: statuses.update([o.status.value])
                )
                for event in events:
                    sender.track(event)
                sender.close(timeout=120)
            return statuses, client.stats

    async_cls = AsyncTogai if provider == "togai" else AsyncLago

    async def run() -> Any:
        async with async_cls(TOKEN, base_url=url, max_in_flight=4, **options) as client:
            if kind == "asyncio":
                statuses.update(outcome.status.value for outcome in await client.send(events))
            else:
                sender = client.background(
                    flush_interval=0.05, on_outcome=lambda o: statuses.update([o.status.value])
                )
                for event in events:
                    sender.track(event)
                await sender.close(timeout=120)
            return statuses, client.stats

    return asyncio.run(run())


def sender_process(
    worker: int,
    kind: str,
    provider: str,
    url: str,
    count: int,
    batch: int,
    pace: float | None,
    budget: str | None,
    go: multiprocessing.synchronize.Event,
    results: Any,
) -> None:
    """Wait for the start signal, send ``count`` events, put (worker, statuses, stats fields) on ``results``."""
    events = make_events(provider, worker, count)
    results.put(("ready", worker))
    go.wait(60)
    try:
        statuses, stats = _send(kind, provider, url, events, _options(pace, budget, batch))
        results.put(("done", worker, dict(statuses), stats.throttled, stats.budget_wait))
    except BaseException as exc:
        results.put(("error", worker, repr(exc)))
        raise
