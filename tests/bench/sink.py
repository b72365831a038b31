"""A minimal Togai + Lago sink for benchmarks: valid bodies get the provider's success answer.

It is a bare ASGI app (no framework, no schema validation, no storage) so that
the server costs as little as possible and the figures measure the clients. It
checks what a real server would refuse cheaply (bad JSON, missing top-level
key, empty or oversized batches), counts the events it accepted, and can add a
fixed latency to every ingestion request.

Routes: Togai under ``/togai`` (``/ingest``, ``/ingestBatch``), Lago under
``/lago/api/v1`` (``/events``, ``/events/batch``), and for the senders users know,
PostHog's ``/posthog/batch/`` and Segment's ``/segment/v1/batch``; admin: ``GET /_sink/stats``,
``POST /_sink/reset``, ``PUT /_sink/config`` with ``{"latency_ms": 50}``.

Run: ``python -m bench.sink --port 8911`` (uvicorn with httptools and uvloop, one process, one worker).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PROVIDERS = ("togai", "lago", "posthog", "segment")
TOGAI_BATCH_LIMIT = 500
LAGO_BATCH_LIMIT = 100
_JSON_HEADERS = [(b"content-type", b"application/json")]
_TOGAI_OK = b'{"success":true}'


class Sink:
    """Counters and settings shared by every request."""

    def __init__(self) -> None:
        self.latency = 0.0
        self.reset()

    def reset(self) -> None:
        self.events = dict.fromkeys(PROVIDERS, 0)
        self.requests = dict.fromkeys(PROVIDERS, 0)


def _iso(timestamp: object, now: dt.datetime) -> str:
    if isinstance(timestamp, int | float | str) and not isinstance(timestamp, bool):
        echoed = _echo(timestamp)
        if echoed is not None:
            return echoed
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@functools.lru_cache(maxsize=65_536)
def _echo(timestamp: float | str) -> str | None:
    """Unix seconds as Lago echoes them; cached, so that the sink's cost stays out of the figures."""
    try:
        moment = dt.datetime.fromtimestamp(float(timestamp), dt.UTC)
    except (ValueError, OverflowError, OSError):
        return None
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _lago_stored(event: dict[str, Any], now: dt.datetime, created_at: str) -> dict[str, Any]:
    return {
        "lago_id": None,
        "transaction_id": event["transaction_id"],
        "lago_customer_id": None,
        "code": event.get("code", ""),
        "timestamp": _iso(event.get("timestamp"), now),
        "lago_subscription_id": None,
        "external_subscription_id": event.get("external_subscription_id", ""),
        "precise_total_amount_cents": event.get("precise_total_amount_cents"),
        "properties": event.get("properties"),
        "created_at": created_at,
    }


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _answer(send: Send, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": _JSON_HEADERS})
    await send({"type": "http.response.body", "body": body})


def _error(status: int, message: str) -> tuple[int, bytes]:
    return status, orjson.dumps({"status": status, "error": message, "message": message})


def create_app(sink: Sink | None = None) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    state = sink or Sink()

    def ingest(provider: str, route: str, body: bytes) -> tuple[int, bytes]:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _error(400, "body is not JSON")
        batch = route.endswith("atch")
        key = "events" if batch else "event"
        items = data.get(key) if isinstance(data, dict) else None
        events = items if batch else [items]
        limit = TOGAI_BATCH_LIMIT if provider == "togai" else LAGO_BATCH_LIMIT
        if not isinstance(events, list) or not events or not all(isinstance(e, dict) for e in events):
            return _error(400, f"param is missing or the value is empty or invalid: {key}")
        if len(events) > limit:
            return _error(422, "too_many_events")
        state.requests[provider] += 1
        state.events[provider] += len(events)
        if provider == "togai":
            return 202, _TOGAI_OK
        if any("transaction_id" not in event for event in events):
            return _error(422, "transaction_id: value_is_mandatory")
        now = dt.datetime.now(dt.UTC)
        created_at = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        stored = [_lago_stored(event, now, created_at) for event in events]
        return 200, orjson.dumps({"events": stored} if batch else {"event": stored[0]})

    def analytics(provider: str, body: bytes) -> tuple[int, bytes]:
        """PostHog's and Segment's batch endpoints: ``{"batch": [...]}``, answered 200."""
        try:
            batch = orjson.loads(body).get("batch")
        except (orjson.JSONDecodeError, AttributeError):
            return _error(400, "body is not a JSON object")
        if not isinstance(batch, list) or not batch:
            return _error(400, "batch is missing or empty")
        state.requests[provider] += 1
        state.events[provider] += len(batch)
        return 200, b'{"status":"Ok"}'

    analytics_routes = {"/posthog/batch": "posthog", "/segment/v1/batch": "segment"}

    routes = {
        "/togai/ingest": ("togai", "ingest"),
        "/togai/ingestBatch": ("togai", "ingestBatch"),
        "/lago/api/v1/events": ("lago", "events"),
        "/lago/api/v1/events/batch": ("lago", "events/batch"),
    }

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"].rstrip("/"), scope["method"]
        body = await _read_body(receive)
        if path == "/_sink/stats" and method == "GET":
            stats = {"events": state.events, "requests": state.requests, "latency_ms": state.latency * 1000}
            await _answer(send, 200, orjson.dumps(stats))
        elif path == "/_sink/reset" and method == "POST":
            state.reset()
            await _answer(send, 200, b"{}")
        elif path == "/_sink/config" and method == "PUT":
            state.latency = float(orjson.loads(body).get("latency_ms", 0)) / 1000
            await _answer(send, 200, b"{}")
        elif path in analytics_routes and method == "POST":
            await _answer(send, *analytics(analytics_routes[path], body))
        elif path in routes and method == "POST":
            if not any(
                name == b"authorization" and value.startswith(b"Bearer ") for name, value in scope["headers"]
            ):
                await _answer(send, 401, b'{"status":401,"error":"Unauthorized","message":"Unauthorized"}')
                return
            if state.latency:
                await asyncio.sleep(state.latency)
            status, answer = ingest(*routes[path], body)
            await _answer(send, status, answer)
        else:
            await _answer(send, 404, b'{"status":404,"error":"Not Found","code":"not_found"}')

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8911)
    args = parser.parse_args()
    uvicorn.run(
        create_app(),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=1024,
        # The cheapest stack uvicorn has (the bench extra installs both): the figures measure the clients.
        http="httptools",
        loop="uvloop",
    )


if __name__ == "__main__":
    main()
