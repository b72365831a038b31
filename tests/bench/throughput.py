"""Throughput rows: each sends events to the sink for about ``seconds`` and reports events/s.

Every row gets the same pre-built events (dicts, or the official clients' models
built before timing, so their model construction is not counted against them)
and runs one warm-up unit before the clock starts. A row's unit of work is one
request (baselines, official clients) or one ``send()`` of several batches
(this project); the clock stops after the first unit that ends past
``seconds``, and for the background sender after ``flush()`` returns.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs
import httpx
import orjson
from attrs import frozen
from demo.generate_events import lago_events, togai_events

from billing_events import AsyncLago, AsyncTogai, Lago, SpoolConfig, Togai

TOKEN = "bench-token"
POOL_SIZE = 5_000
BATCH = {"togai": 500, "lago": 100}


@frozen
class Measurement:
    row: str
    events: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


@frozen
class Target:
    origin: str
    provider: str
    seconds: float

    @property
    def base_url(self) -> str:
        return f"{self.origin}/togai" if self.provider == "togai" else f"{self.origin}/lago/api/v1"

    @property
    def batch(self) -> int:
        return BATCH[self.provider]


def event_pool(provider: str, size: int = POOL_SIZE) -> list[dict[str, Any]]:
    import random

    rng = random.Random(11)
    events = togai_events(size, rng) if provider == "togai" else lago_events(size, rng)
    return list(events)


def keyed(provider: str, events: Sequence[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    field = "id" if provider == "togai" else "transaction_id"
    return [{**event, field: f"{prefix}-{index}"} for index, event in enumerate(events)]


def slices(events: Sequence[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Endless consecutive slices of ``size`` events, wrapping around the pool."""
    doubled = list(events) * 2
    for start in itertools.cycle(range(0, len(events), size)):
        yield doubled[start : start + size]


def _timed(unit: Callable[[], int], seconds: float) -> tuple[int, float]:
    unit()  # warm-up: connections, imports, caches
    events = 0
    started = time.perf_counter()
    while True:
        events += unit()
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return events, elapsed


# -- baselines and official clients ---------------------------------------------------------------


def raw_httpx(target: Target, pool: Sequence[dict[str, Any]]) -> Measurement:
    """One pooled httpx.Client posting pre-serialized batches at the provider's limit, one at a time."""
    path = "/ingestBatch" if target.provider == "togai" else "/events/batch"
    bodies = [
        orjson.dumps({"events": keyed(target.provider, chunk, f"raw{n}")})
        for n, chunk in zip(range(len(pool) // target.batch), slices(pool, target.batch), strict=False)
    ]
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    with httpx.Client(base_url=target.base_url, headers=headers, timeout=30) as client:
        bodies_cycle = itertools.cycle(bodies)

        def unit() -> int:
            client.post(path, content=next(bodies_cycle)).raise_for_status()
            return target.batch

        events, elapsed = _timed(unit, target.seconds)
    return Measurement(f"raw httpx, pre-serialized, {target.batch}/request", events, elapsed)


def lago_official_create(target: Target, pool: Sequence[dict[str, Any]]) -> Measurement:
    from lago_python_client.client import Client
    from lago_python_client.models.event import Event

    # The client appends "api/v1/" to api_url with urljoin, so the URL must end with "/".
    client = Client(api_key=TOKEN, api_url=f"{target.origin}/lago/")
    models = itertools.cycle([Event(**event) for event in keyed("lago", pool[:1000], "lc")])

    def unit() -> int:
        client.events.create(next(models))
        return 1

    events, elapsed = _timed(unit, target.seconds)
    return Measurement("lago-python-client events.create, 1/call", events, elapsed)


def lago_official_batch(target: Target, pool: Sequence[dict[str, Any]]) -> Measurement:
    from lago_python_client.client import Client
    from lago_python_client.models.event import BatchEvent, Event

    client = Client(api_key=TOKEN, api_url=f"{target.origin}/lago/")
    batches = [
        BatchEvent(events=[Event(**event) for event in keyed("lago", chunk, f"lb{n}")])
        for n, chunk in zip(range(len(pool) // 100), slices(pool, 100), strict=False)
    ]
    cycle = itertools.cycle(batches)

    def unit() -> int:
        client.events.batch_create(next(cycle))
        return 100

    events, elapsed = _timed(unit, target.seconds)
    return Measurement("lago-python-client events.batch_create, 100", events, elapsed)


def togai_official_batch(target: Target, pool: Sequence[dict[str, Any]]) -> Measurement:
    from togai_client.api.event_ingestion_api import EventIngestionApi
    from togai_client.api_client import ApiClient
    from togai_client.configuration import Configuration
    from togai_client.models.event import Event
    from togai_client.models.ingest_batch_event_request import IngestBatchEventRequest

    api = EventIngestionApi(ApiClient(Configuration(host=f"{target.origin}/togai", access_token=TOKEN)))

    def model(event: dict[str, Any]) -> Event:
        built = Event.from_dict(event)
        assert built is not None
        return built

    requests = [
        IngestBatchEventRequest(events=[model(event) for event in keyed("togai", chunk, f"tb{n}")])
        for n, chunk in zip(range(len(pool) // 500), slices(pool, 500), strict=False)
    ]
    cycle = itertools.cycle(requests)

    def unit() -> int:
        api.ingest_batch(next(cycle))
        return 500

    events, elapsed = _timed(unit, target.seconds)
    return Measurement("togai-client ingest_batch, 500", events, elapsed)


# -- this project ---------------------------------------------------------------------------------


# The throughput rows measure the client's own cost: pacing is off (the pacing rows measure it apart).
NO_PACING: dict[str, Any] = {"max_requests_per_second": None}


def _client(target: Target) -> Togai | Lago:
    kind = Togai if target.provider == "togai" else Lago
    return kind(TOKEN, base_url=target.base_url, **NO_PACING)


def _check(report_ok: bool, row: str) -> None:
    if not report_ok:
        raise RuntimeError(f"{row}: some events were not delivered")


def overlay_send(target: Target, pool: Sequence[dict[str, Any]]) -> Measurement:
    row = "billing_events sync send()"
    with _client(target) as client:
        chunks = slices(pool, target.batch * 5)

        def unit() -> int:
            chunk = next(chunks)
            _check(client.send(chunk).ok, row)
            return len(chunk)

        events, elapsed = _timed(unit, target.seconds)
    return Measurement(row, events, elapsed)


def overlay_background(
    target: Target, pool: Sequence[dict[str, Any]], *, workers: int = 1, spool: str | None = None
) -> Measurement:
    """``spool`` names a durability: the sender then spools to a temporary directory."""
    if spool is None:
        return _overlay_background(target, pool, workers, None)
    with tempfile.TemporaryDirectory() as directory:
        config = SpoolConfig(directory, durability=spool)  # type: ignore[arg-type]
        return _overlay_background(target, pool, workers, config)


def _overlay_background(
    target: Target, pool: Sequence[dict[str, Any]], workers: int, spool: SpoolConfig | None
) -> Measurement:
    row = f"billing_events track() + flush, {workers} worker{'s' if workers > 1 else ''}"
    if spool is not None:
        row += f", spool ({spool.durability})"
    with _client(target) as client:
        # A queue of a few batches per worker: track() then runs at the pace of delivery (block policy).
        # With a spool, the spool's bound plays that part (about the same number of events).
        queue_events = target.batch * 4 * workers
        if spool is not None:
            spool = attrs.evolve(spool, max_bytes=max(queue_events * 300, 1 << 20))
            queue_events = 100_000  # the in-memory window holds all the spool does: nothing is read back
        sender = client.background(
            workers=workers, max_queue_events=queue_events, on_full="block", block_timeout=60, spool=spool
        )
        try:
            events = itertools.cycle(pool)
            for _ in range(target.batch):
                sender.track(next(events))
            sender.flush(60)
            tracked = 0
            started = time.perf_counter()
            while time.perf_counter() - started < target.seconds:
                for _ in range(500):
                    sender.track(next(events))
                tracked += 500
            if not sender.flush(120):
                raise RuntimeError(f"{row}: flush timed out")
            elapsed = time.perf_counter() - started
            stats = sender.stats
        finally:
            sender.close(30)
    if stats.delivered != tracked + target.batch:
        raise RuntimeError(f"{row}: {stats.delivered} delivered of {tracked + target.batch}")
    return Measurement(row, tracked, elapsed)


def overlay_async(target: Target, pool: Sequence[dict[str, Any]], *, in_flight: int) -> Measurement:
    row = f"billing_events async send(), {in_flight} in flight"

    async def run() -> tuple[int, float]:
        kind = AsyncTogai if target.provider == "togai" else AsyncLago
        async with kind(TOKEN, base_url=target.base_url, max_in_flight=in_flight, **NO_PACING) as client:
            # Many rounds per send(): each call ends by draining its lanes, and that tail is not steady state.
            chunks = slices(pool, target.batch * in_flight * 8)
            _check((await client.send(next(chunks))).ok, row)
            events = 0
            started = time.perf_counter()
            while True:
                chunk = next(chunks)
                _check((await client.send(chunk)).ok, row)
                events += len(chunk)
                elapsed = time.perf_counter() - started
                if elapsed >= target.seconds:
                    return events, elapsed

    events, elapsed = asyncio.run(run())
    return Measurement(row, events, elapsed)


Row = Callable[[Target, Sequence[dict[str, Any]]], Measurement]


def rows_for(provider: str, *, in_flight: int, workers: int) -> list[tuple[str, Row]]:
    """The rows of one provider, baseline first; the key names the row on the command line."""
    official: list[tuple[str, Row]] = (
        [("official-create", lago_official_create), ("official-batch", lago_official_batch)]
        if provider == "lago"
        else [("official-batch", togai_official_batch)]
    )
    return [
        ("raw", raw_httpx),
        *official,
        ("send", overlay_send),
        ("background", lambda target, pool: overlay_background(target, pool, workers=workers)),
        (
            "background-spool",
            lambda target, pool: overlay_background(target, pool, workers=workers, spool="group"),
        ),
        ("async", lambda target, pool: overlay_async(target, pool, in_flight=in_flight)),
    ]
