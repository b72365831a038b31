"""`ProviderMock`: one provider of a mock as a test sees it (URL, token, clients, stored events, faults).

The pytest fixtures (`billing_events.pytest_plugin`) hand these out; they work without pytest as well:

    with ProviderMock.create_in_process("lago") as lago:
        lago.client.send(events)
        lago.assert_stored(events)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack
from typing import Any, Literal

import httpx
import orjson
from starlette.applications import Starlette

from billing_events.aio import AsyncLago, AsyncTogai
from billing_events.client import Lago, Togai
from billing_events.mock.app import create_app
from billing_events.mock.config import (
    DEFAULT_TOKEN,
    LAGO_PREFIX,
    LAGO_STORES,
    TOGAI_PREFIX,
    FaultConfig,
    MockConfig,
)
from billing_events.mock.jsonio import dump_json, parse_json
from billing_events.mock.ratelimit import RateLimitConfig, RateLimiter
from billing_events.mock.state import MockState
from billing_events.mock.testing import async_transport, serve_in_thread, sync_transport
from billing_events.text import show, shown

ProviderName = Literal["togai", "lago"]
# What tells two stored events apart: (key, subscription). Togai's ids are unique, so its subscription part is
# always None; Lago keys an event by (external_subscription_id, transaction_id).
# (key, subscription, code): how the store tells events apart (the parts it does not use are None).
StoredKey = tuple[str, str | None, str | None]
# The host of in-process base URLs: requests never leave the process, so it is never resolved.
IN_PROCESS_ORIGIN = "http://billing-events-mock"
# At most this many keys are named in one assertion message.
SHOWN_KEYS = 10


def _key_of(event: object, field: str) -> str:
    if isinstance(event, str):
        return event
    value = _field_of(event, field)
    if not isinstance(value, str):
        raise TypeError(f"assert_stored: expected events with a string {field!r} or keys, got {show(event)}")
    return value


def _field_of(event: object, field: str) -> object:
    return event.get(field) if isinstance(event, Mapping) else getattr(event, field, None)


def _subscription_of(event: object) -> str | None:
    """A Lago event's `external_subscription_id`; None when it has none (missing, null, an unset model field)."""
    value = _field_of(event, "external_subscription_id")
    return value if isinstance(value, str) else None


def _close_outside_loops(client: AsyncTogai | AsyncLago | httpx.AsyncClient) -> None:
    """Close an async client from synchronous teardown, unless an event loop runs here.

    A client already closed in its own loop is left as it is. One whose loop has ended may hold
    connections of that loop: closing them from this new loop can fail, and then only the client's
    own state is closed (its sockets went with their loop).
    """
    http = client.http if isinstance(client, AsyncTogai | AsyncLago) else client
    if http.is_closed:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        with contextlib.suppress(RuntimeError, OSError):
            asyncio.run(client.aclose())


def _named(labels: Iterable[str]) -> str:
    """Labels of keys, sorted, at most SHOWN_KEYS of them."""
    listed = sorted(labels)
    shown = ", ".join(listed[:SHOWN_KEYS])
    return shown + (f" and {len(listed) - SHOWN_KEYS} more" if len(listed) > SHOWN_KEYS else "")


class ProviderMock:
    """A fresh mock of one provider, in-process (httpx transports) or served over HTTP on a loopback port.

    Clients made here are closed by `close()`; events, faults and the Lago store are read and set directly
    on the mock's state, without a request.
    """

    def __init__(self, provider: ProviderName, app: Starlette, origin: str, *, served: bool) -> None:
        if provider not in ("togai", "lago"):
            raise ValueError(f"provider: must be 'togai' or 'lago', got {shown(provider)}")
        self.provider: ProviderName = provider
        self.app = app
        self.origin = origin
        self.served = served
        self.base_url = origin + (TOGAI_PREFIX if provider == "togai" else LAGO_PREFIX)
        self.key_field = "id" if provider == "togai" else "transaction_id"
        self._closing = ExitStack()
        self._client: Togai | Lago | None = None
        self._async_client: AsyncTogai | AsyncLago | None = None

    @classmethod
    def create_in_process(
        cls, provider: ProviderName, *, lago_store: str = "postgres", **settings: Any
    ) -> ProviderMock:
        """A mock reached through in-process transports; `settings` are `MockConfig` fields."""
        app = create_app(MockConfig(lago_store=lago_store, **settings))
        return cls(provider, app, IN_PROCESS_ORIGIN, served=False)

    @classmethod
    def create_served(
        cls, provider: ProviderName, *, lago_store: str = "postgres", **settings: Any
    ) -> ProviderMock:
        """A mock served by uvicorn on a free loopback port, in a background thread, until `close()`."""
        app = create_app(MockConfig(lago_store=lago_store, **settings))
        server: AbstractContextManager[str] = serve_in_thread(app)
        origin = server.__enter__()
        mock = cls(provider, app, origin, served=True)
        mock._closing.push(server.__exit__)
        return mock

    def __repr__(self) -> str:
        return f"ProviderMock({self.provider!r}, base_url={self.base_url!r}, store={self.store!r})"

    # -- reaching the mock ----------------------------------------------------------------------------

    @property
    def state(self) -> MockState:
        state: MockState = self.app.state.mock
        return state

    @property
    def token(self) -> str:
        return self.state.config.token

    def transport(self) -> httpx.BaseTransport | None:
        """A new sync transport for `httpx.Client` (None over HTTP: the network is the transport)."""
        return sync_transport(self.app) if not self.served else None

    def async_transport(self) -> httpx.AsyncBaseTransport | None:
        """A new async transport for `httpx.AsyncClient` (None over HTTP)."""
        return async_transport(self.app) if not self.served else None

    def new_client(self, **options: Any) -> Togai | Lago:
        """A client of this library for the mock, closed with it; `options` as for `Togai(...)` / `Lago(...)`
        (`token="wrong"` gives a client the mock refuses)."""
        kind = Togai if self.provider == "togai" else Lago
        token = options.pop("token", self.token)
        options.setdefault("base_url", self.base_url)
        if "transport" not in options:
            options["transport"] = self.transport()
        client = kind(token, **options)
        self._closing.callback(client.close)
        return client

    def new_async_client(self, **options: Any) -> AsyncTogai | AsyncLago:
        """An async client for the mock, usable from any event loop like `async_client`; closed with the mock
        when no event loop runs then (else close it with `async with` in its own loop)."""
        kind = AsyncTogai if self.provider == "togai" else AsyncLago
        token = options.pop("token", self.token)
        options.setdefault("base_url", self.base_url)
        if "transport" not in options:
            options["transport"] = self._any_loop_transport()
        client = kind(token, **options)
        self._closing.callback(_close_outside_loops, client)
        return client

    def _any_loop_transport(self) -> httpx.AsyncBaseTransport:
        """In-process, or over HTTP with no connection kept between requests: none is tied to one loop."""
        return self.async_transport() or httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_keepalive_connections=0)
        )

    @property
    def client(self) -> Togai | Lago:
        """A ready-made sync client, closed with the mock."""
        if self._client is None:
            self._client = self.new_client()
        return self._client

    @property
    def async_client(self) -> AsyncTogai | AsyncLago:
        """A ready-made async client, usable from any event loop: it keeps no connection between requests."""
        if self._async_client is None:
            self._async_client = self.new_async_client()
        return self._async_client

    def http_client(self, **options: Any) -> httpx.Client:
        """A plain `httpx.Client` with the base URL and the bearer token set, closed with the mock;
        `headers` are added to the token's (an `Authorization` of their own replaces it)."""
        if "transport" not in options:
            options["transport"] = self.transport()
        client = httpx.Client(**self._http_options(options))
        self._closing.callback(client.close)
        return client

    def async_http_client(self, **options: Any) -> httpx.AsyncClient:
        """A plain `httpx.AsyncClient` like `http_client()`, usable from any event loop; closed with the
        mock when no event loop runs then (else close it in its own loop)."""
        if "transport" not in options and not self.served:
            options["transport"] = self.async_transport()
        elif self.served:
            # Over HTTP, httpx's own transport (so `verify=`, `http2=`, proxies still apply), keeping no
            # connection between requests: none is tied to one event loop.
            options.setdefault("limits", httpx.Limits(max_keepalive_connections=0))
        client = httpx.AsyncClient(**self._http_options(options))
        self._closing.callback(_close_outside_loops, client)
        return client

    def _http_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options.setdefault("base_url", self.base_url)
        headers = httpx.Headers(self._auth())
        headers.update(options.get("headers") or {})
        options["headers"] = headers
        return options

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    # -- what it stored -------------------------------------------------------------------------------

    def stored(self) -> list[dict[str, Any]]:
        """The events the provider keeps, after deduplication in the current store mode, in arrival order.

        Copies: a test that edits what it read leaves the mock's events as they were.
        """
        events = self.state.togai.events() if self.provider == "togai" else self.state.lago.events()
        try:
            copies: list[dict[str, Any]] = orjson.loads(orjson.dumps(events))
        except (TypeError, orjson.JSONEncodeError):
            # What the mock keeps on purpose and orjson cannot write: integers beyond 64 bits, lone surrogates.
            copies = parse_json(dump_json(events))  # type: ignore[assignment]
        return copies

    def stored_keys(self) -> set[str]:
        """The `id` (Togai) or `transaction_id` (Lago) of every stored event."""
        return {_key_of(event, self.key_field) for event in self.stored()}

    def assert_stored(self, expected: Iterable[object] | str) -> None:
        """Assert the mock stored exactly these events (dicts, event objects or keys), each once; a str
        is one key.

        A Lago event is told apart as its store keys it: by (external_subscription_id, transaction_id) on
        Postgres, and with its `code` too on ClickHouse (one id sent for two subscriptions, or there for two
        metrics, is two events). A bare key names every event stored with it.
        """
        events = [expected] if isinstance(expected, str) else expected
        counts = Counter(self._stored_key(event) for event in self.stored())
        stored_as: dict[str, set[StoredKey]] = {}
        for stored_key in counts:
            stored_as.setdefault(stored_key[0], set()).add(stored_key)
        wanted: set[StoredKey] = set()
        missing: set[str] = set()
        for event in events:
            if isinstance(event, str):
                found = stored_as.get(event, set())
                wanted |= found
                if not found:
                    missing.add(show(event))
                continue
            stored_key = self._stored_key(event)
            wanted.add(stored_key)
            if stored_key not in counts:
                missing.add(self._label(stored_key))
        problems = []
        if missing:
            problems.append(f"not stored: {_named(missing)}")
        if unexpected := counts.keys() - wanted:
            problems.append(f"stored but not expected: {_named(map(self._label, unexpected))}")
        if repeated := [key for key, count in counts.items() if count > 1]:
            problems.append(f"stored more than once: {_named(map(self._label, repeated))}")
        if problems:
            raise AssertionError(f"{self.provider} mock ({self.store} store): " + "; ".join(problems))

    def _stored_key(self, event: object) -> StoredKey:
        key = _key_of(event, self.key_field)
        if self.provider != "lago":
            return (key, None, None)
        code = _field_of(event, "code") if self.store == "clickhouse" else None
        return (key, _subscription_of(event), code if isinstance(code, str) else None)

    def _label(self, stored_key: StoredKey) -> str:
        """A key as a failed assertion names it: a Lago key with its subscription, since the id alone may be
        shared."""
        key, subscription, code = stored_key
        if self.provider != "lago":
            return show(key)
        return f"{show(key)} (subscription {show(subscription)}" + (f", code {show(code)})" if code else ")")

    def stats(self) -> dict[str, int]:
        """`stored`, `duplicates`, `requests` (and for Lago `arrivals`: writes before deduplication)."""
        stats = self.state.togai.stats() if self.provider == "togai" else self.state.lago.stats()
        return stats.to_dict()

    # -- steering it ----------------------------------------------------------------------------------

    @property
    def faults(self) -> FaultConfig:
        return self.state.faults.config

    def set_faults(self, **settings: object) -> FaultConfig:
        """Change some fault settings (`rate_429=0.2`, `seed=7`, ...); the others keep their values."""
        return self.state.faults.update(settings)

    def clear_faults(self) -> FaultConfig:
        """Back to the faults the mock started with (none, unless configured)."""
        return self.state.faults.reset()

    def set_rate_limits(self, **settings: object) -> RateLimitConfig:
        """Enforce the providers' rate limits (`enabled=True`, `limits={"togai.ingest_batch": 40}`,
        `burst_seconds=1.0`); the buckets start full again."""
        limiter: RateLimiter = self.app.state.rate_limiter
        return limiter.update(settings)

    def rate_counters(self) -> dict[str, Any]:
        """Accepted and throttled requests per second and endpoint group."""
        limiter: RateLimiter = self.app.state.rate_limiter
        return limiter.counters()

    @property
    def store(self) -> str:
        """Which Lago event store the mock behaves like: `postgres` or `clickhouse`."""
        return self.state.lago.kind

    def set_store(self, kind: str) -> None:
        """Behave like Lago's `postgres` or `clickhouse` store from now on; stored Lago events are forgotten."""
        if kind not in LAGO_STORES:
            raise ValueError(f"store: must be one of {', '.join(LAGO_STORES)}, got {shown(kind)}")
        self.state.switch_lago_store(kind)

    def reset(self) -> None:
        """Forget every event and counter; restore the start-up faults, store and rate limits."""
        self.state.reset()
        limiter: RateLimiter = self.app.state.rate_limiter
        limiter.reset()

    def close(self) -> None:
        """Close the clients made here and stop the server, if any."""
        self._client = self._async_client = None
        self._closing.close()

    def __enter__(self) -> ProviderMock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def provider_mock(
    provider: ProviderName, *, served: bool, lago_store: str = "postgres", token: str = DEFAULT_TOKEN
) -> Iterator[ProviderMock]:
    """A fixture body: one fresh mock for the test, closed after it."""
    make = ProviderMock.create_served if served else ProviderMock.create_in_process
    with make(provider, lago_store=lago_store, token=token) as mock:
        yield mock
