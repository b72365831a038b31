"""The Starlette application serving Togai under `/togai`, Lago under `/lago/api/v1` and `/_mock` admin routes."""

from __future__ import annotations

import logging
from typing import Any

import attrs
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from billing_events.mock import lago, togai
from billing_events.mock.admin import admin_routes
from billing_events.mock.config import LAGO_PREFIX, TOGAI_PREFIX, MockConfig
from billing_events.mock.errors import Provider, provider_error
from billing_events.mock.faults import ConnectionDropped
from billing_events.mock.gateway import DEFAULT_RATE_LIMIT, public_endpoint
from billing_events.mock.ratelimit import RateLimiter, rate_limited
from billing_events.mock.state import MockState

# Lago Cloud allows 500 event-ingestion requests per second (single and batch) and 50 for most others.
LAGO_INGESTION_RATE_LIMIT = 500

logger = logging.getLogger("billing_events.mock")


class AnyTextConvertor(Convertor[str]):
    """Like Starlette's `path`, but also across newlines: a decoded transaction id can hold any character."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("any_text", AnyTextConvertor())


def provider_for(path: str) -> Provider | None:
    """Which API a path belongs to, so even unknown paths answer in that API's error shape."""
    for provider in Provider:
        prefix = f"/{provider.value}"
        if path == prefix or path.startswith(f"{prefix}/"):
            return provider
    return None


class RequestCounter:
    """Counts every request that reaches a provider's prefix, whatever its outcome."""

    def __init__(self, app: ASGIApp, state: MockState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            provider = provider_for(scope["path"])
            if provider is not None:
                self.state.store_of(provider).count_request()
        await self.app(scope, receive, send)


async def http_error(request: Request, exc: Exception) -> Response:
    """Router 404s and 405s, in the shape of the API the path belongs to."""
    assert isinstance(exc, HTTPException)
    return provider_error(provider_for(request.url.path), exc.status_code, exc.detail, exc.headers)


async def unexpected_error(request: Request, exc: Exception) -> Response:
    """Last resort: a provider-shaped 400 instead of Starlette's 500, unless the response already started."""
    if not isinstance(exc, ConnectionDropped):
        logger.error("mock failed outside a handler: %r", exc)
    return provider_error(
        provider_for(request.url.path), 400, f"the mock could not handle this request: {exc!r}"
    )


def _limited(
    provider: Provider, handler: Any, rate_limit: int = DEFAULT_RATE_LIMIT, *, writes: bool = False
) -> Any:
    """The public endpoint of a handler behind its group's rate limit (a group per handler)."""
    group = f"{provider.value}.{handler.__name__}"
    return rate_limited(provider, group, public_endpoint(provider, handler, rate_limit, writes=writes))


def public_routes() -> list[Route]:
    togai_ops = [("/ingest", togai.ingest), ("/ingestBatch", togai.ingest_batch)]
    lago_ops = [
        ("/events", lago.create_event, "POST", LAGO_INGESTION_RATE_LIMIT, True),
        ("/events/batch", lago.create_batch_events, "POST", LAGO_INGESTION_RATE_LIMIT, True),
        # Every method but GET is a write to lago-api's key permissions, estimate_fees' POST included.
        ("/events/estimate_fees", lago.estimate_fees, "POST", DEFAULT_RATE_LIMIT, True),
        # Any text, so an id holding an encoded slash or newline still reaches the handler, which decodes the raw path.
        ("/events/{transaction_id:any_text}", lago.find_event, "GET", DEFAULT_RATE_LIMIT, False),
    ]
    routes = [
        Route(f"{TOGAI_PREFIX}{path}", _limited(Provider.TOGAI, handler), methods=["POST"])
        for path, handler in togai_ops
    ]
    routes += [
        Route(
            f"{LAGO_PREFIX}{path}",
            _limited(Provider.LAGO, handler, rate_limit, writes=writes),
            methods=[method],
        )
        for path, handler, method, rate_limit, writes in lago_ops
    ]
    return routes


def create_app(config: MockConfig | None = None, *, lago_store: str | None = None) -> Starlette:
    """A fresh mock with its own state, which tests can reach as `app.state.mock`.

    `lago_store` ("postgres" or "clickhouse") overrides the config's choice of Lago event store.
    """
    config = config or MockConfig()
    if lago_store is not None:
        config = attrs.evolve(config, lago_store=lago_store)
    state = MockState(config)
    app = Starlette(
        routes=[*public_routes(), *admin_routes()],
        middleware=[Middleware(RequestCounter, state=state)],
        exception_handlers={HTTPException: http_error, Exception: unexpected_error},
    )
    # A redirect is not in either spec; a missing or extra slash is answered 404 or 405 instead.
    app.router.redirect_slashes = False
    app.state.mock = state
    app.state.rate_limiter = RateLimiter(config.rate_limits)
    return app
