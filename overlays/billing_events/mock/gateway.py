"""What every public route does before and after its handler: auth, fault injection, no 500s."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from anyio import sleep
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from billing_events.mock.auth import is_authorized
from billing_events.mock.config import FaultConfig
from billing_events.mock.errors import Provider, lago_error, provider_error, togai_error
from billing_events.mock.faults import DroppedConnection, Fault, captive_portal, gateway_error
from billing_events.mock.jsonio import JsonResponse
from billing_events.mock.state import MockState
from billing_events.mock.stores import StoreFull

Handler = Callable[[Request, MockState], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]

logger = logging.getLogger("billing_events.mock")

# Lago Cloud's documented per-organisation limits: 500/s for single events, 50/s elsewhere.
DEFAULT_RATE_LIMIT = 50


def forbidden_write() -> Response:
    body = {"status": 403, "error": "Forbidden", "code": "write_action_not_allowed_for_event"}
    return JsonResponse(body, status_code=403)


def unauthorized(provider: Provider) -> Response:
    if provider is Provider.LAGO:
        return lago_error(401)
    return togai_error(401, "Credential is not valid")


def throttled(provider: Provider, faults: FaultConfig, rate_limit: int) -> Response:
    if provider is Provider.LAGO:
        # Lago's wait is X-RateLimit-Reset: its rate-limit page names no Retry-After.
        headers = {
            "X-RateLimit-Limit": str(rate_limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(faults.retry_after),
        }
        return lago_error(429, headers)
    return togai_error(429, "Request throttled", {"Retry-After": str(faults.retry_after)})


def unavailable(provider: Provider, faults: FaultConfig) -> Response:
    headers = {"Retry-After": str(faults.retry_after)}
    if provider is Provider.LAGO:
        return lago_error(503, headers)
    return togai_error(503, "Service unavailable", headers)


def store_full(provider: Provider, full: StoreFull) -> Response:
    if provider is Provider.LAGO:
        body = {"status": 503, "error": f"Service Unavailable: {full}"}
        return JsonResponse(body, status_code=503)
    return togai_error(503, str(full))


def public_endpoint(
    provider: Provider, handler: Handler, rate_limit: int = DEFAULT_RATE_LIMIT, writes: bool = False
) -> Endpoint:
    """Wrap a provider handler with bearer auth, one fault draw and a last-resort error answer.

    `writes`: any method but GET, which Lago's restricted key may not use on events (403).
    """

    async def endpoint(request: Request) -> Response:
        state: MockState = request.app.state.mock
        if not is_authorized(request, state.config.token, provider):
            restricted = state.config.restricted_token
            if (
                provider is not Provider.LAGO
                or restricted is None
                or not is_authorized(request, restricted, provider)
            ):
                return unauthorized(provider)
            if writes:
                return forbidden_write()
        fault, faults = state.faults.draw()
        if faults.latency_ms:
            # anyio's sleep works under asyncio and trio alike, whichever loop the transport runs.
            await sleep(faults.latency_ms / 1000)
        if fault is Fault.THROTTLED:
            return throttled(provider, faults, rate_limit)
        if fault is Fault.UNAVAILABLE:
            return unavailable(provider, faults)
        if fault is Fault.DROP:
            return DroppedConnection()
        if fault is Fault.GATEWAY:
            return gateway_error(faults.gateway_status)
        if fault is Fault.HTML_OK:
            return captive_portal()
        try:
            response = await handler(request, state)
        except StoreFull as full:
            # Nothing of the request was stored: a sender retries it, and ends it unknown at its deadline.
            logger.log(logging.WARNING if full.first else logging.DEBUG, "%s: %s", provider.value, full)
            response = store_full(provider, full)
        except ClientDisconnect:
            # The client went away before its body arrived (a cancelled or killed sender): nobody reads
            # the answer, and nothing was stored. 499, as proxies log such a request.
            logger.info("client left during %s %s", request.method, request.url.path)
            return Response(status_code=499)
        except Exception as exc:
            # A mock bug must not look like a provider outage; log it loudly and answer a client error.
            logger.exception("mock handler failed for %s %s", request.method, request.url.path)
            response = provider_error(provider, 400, f"the mock could not handle this request: {exc!r}")
        if fault is Fault.LOST_RESPONSE:
            return DroppedConnection()
        return response

    endpoint.__name__ = handler.__name__
    return endpoint
