"""`/_mock/*`: inspect and steer a running mock. Outside the public specs, and needs no token."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from billing_events.mock.bodies import BodyRejected, read_settings
from billing_events.mock.config import LAGO_STORES, FaultConfigError
from billing_events.mock.errors import Provider, togai_error
from billing_events.mock.jsonio import JsonResponse
from billing_events.mock.ratelimit import limiter_of, rate_limits_route
from billing_events.mock.state import MockState


def _state(request: Request) -> MockState:
    state: MockState = request.app.state.mock
    return state


async def stats(request: Request) -> Response:
    return JsonResponse(_state(request).stats())


# Past any store's size: a larger offset or limit means the same page (and int() refuses past 4,300 digits).
_PAGE_NUMBER_DIGITS = 18


def _page_number(digits: str) -> int:
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= _PAGE_NUMBER_DIGITS else 10**_PAGE_NUMBER_DIGITS


def _page(request: Request) -> tuple[int, int | None] | Response:
    """``?offset=`` and ``?limit=`` (whole numbers): a page of a store, which whole can be hundreds of megabytes."""
    values: list[int | None] = []
    for name in ("offset", "limit"):
        text = request.query_params.get(name)
        if text is None:
            values.append(None)
        elif text.isdigit() and text.isascii():
            values.append(_page_number(text))
        else:
            return togai_error(400, f"{name}: expected a whole number, got {text[:40]!r}")
    offset, limit = values
    return offset or 0, limit


async def togai_events(request: Request) -> Response:
    page = _page(request)
    if isinstance(page, Response):
        return page
    return JsonResponse(_state(request).togai.events(*page))


async def lago_events(request: Request) -> Response:
    page = _page(request)
    if isinstance(page, Response):
        return page
    return JsonResponse(_state(request).lago.events(*page))


async def reset(request: Request) -> Response:
    state = _state(request)
    state.reset()
    limiter_of(request).reset()
    return JsonResponse({"reset": True, "faults": state.faults.config.to_dict()})


async def faults(request: Request) -> Response:
    """GET answers the fault configuration; PUT changes some of its settings and answers the result."""
    if request.method != "PUT":
        return JsonResponse(_state(request).faults.config.to_dict())
    try:
        changes = await read_settings(request)
    except BodyRejected as rejection:
        return togai_error(400, rejection.detail)
    if not isinstance(changes, dict):
        return togai_error(400, "the fault configuration must be a JSON object")
    try:
        config = _state(request).faults.update(changes)
    except FaultConfigError as exc:
        return togai_error(400, str(exc))
    return JsonResponse(config.to_dict())


async def lago_store(request: Request) -> Response:
    """GET answers `{"store": ...}`; PUT `{"store": "postgres"|"clickhouse"}` switches and forgets Lago's events."""
    state = _state(request)
    if request.method == "PUT":
        try:
            changes = await read_settings(request)
        except BodyRejected as rejection:
            return togai_error(400, rejection.detail)
        kind = changes.get("store") if isinstance(changes, dict) else None
        if not isinstance(kind, str) or kind not in LAGO_STORES:
            return togai_error(400, f"store: must be one of {', '.join(LAGO_STORES)}")
        state.switch_lago_store(kind)
    return JsonResponse({"store": state.lago.kind})


def admin_routes() -> list[Route]:
    events_routes = {Provider.TOGAI: togai_events, Provider.LAGO: lago_events}
    return [
        Route("/_mock/stats", stats, methods=["GET"]),
        *(
            Route(f"/_mock/events/{provider}", endpoint, methods=["GET"])
            for provider, endpoint in events_routes.items()
        ),
        Route("/_mock/reset", reset, methods=["POST"]),
        Route("/_mock/faults", faults, methods=["GET", "PUT"]),
        Route("/_mock/lago_store", lago_store, methods=["GET", "PUT"]),
        Route("/_mock/rate_limits", rate_limits_route, methods=["GET", "PUT"]),
    ]
