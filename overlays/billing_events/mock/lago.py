"""Lago's `/events` operations: create, batch, estimate_fees and find."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response

from billing_events.mock.bodies import (
    FALLBACK_MAX_BYTES,
    BodyProblem,
    BodyRejected,
    is_rails_json_media_type,
    read_json,
)
from billing_events.mock.config import LAGO_PREFIX
from billing_events.mock.errors import (
    lago_bad_request,
    lago_body_too_large,
    lago_not_found,
    lago_unprocessable,
)
from billing_events.mock.fees import EstimateRefused, estimate
from billing_events.mock.jsonio import JsonResponse
from billing_events.mock.lago_events import (
    FieldErrors,
    Reception,
    field_errors,
    judge_event,
    key_of,
    raw_row,
)
from billing_events.mock.state import MockState
from billing_events.mock.stores import ClickhouseLagoStore

FIND_PREFIX = f"{LAGO_PREFIX}/events/"


class _Refused(Exception):
    """Carries the error answer out of the shared body-reading steps."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


async def _top_level(request: Request, param: str, max_bytes: int | None, kind: type) -> Any:
    """The body's one required top-level value, or 400 as Rails' `params.require` gives it.

    Other top-level keys are ignored, as the server drops unpermitted parameters.
    """
    limit = max_bytes or FALLBACK_MAX_BYTES
    try:
        body = await read_json(request, limit, is_rails_json_media_type)
    except BodyRejected as rejection:
        if rejection.problem is BodyProblem.TOO_LARGE:
            raise _Refused(lago_body_too_large(limit)) from None
        if kind is list and rejection.problem is not BodyProblem.MALFORMED:
            # Rails parses no params from an empty or non-JSON body; only unparsable JSON is a 400.
            return []
        raise _Refused(lago_bad_request(param)) from None
    if kind is list:
        # The batch service reads `events` itself (it never calls `params.require`): missing, null or not a
        # list is an empty batch, and so is a body that is not an object (Rails files it under `_json`).
        value = body.get(param) if isinstance(body, dict) else None
        # Rails permits only the objects of an array filtered by a hash: other items vanish before indexing.
        return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
    if not isinstance(body, dict):
        raise _Refused(lago_bad_request(param))
    value = body.get(param)
    # Missing, null, empty and wrongly typed values all count as "missing" for `params.require`.
    if not isinstance(value, kind) or (isinstance(value, dict) and not value):
        raise _Refused(lago_bad_request(param))
    return value


async def create_event(request: Request, state: MockState) -> Response:
    rules = state.rules.lago
    try:
        event = await _top_level(request, "event", rules.create_max_bytes, dict)
    except _Refused as refused:
        return refused.response
    # The spec's rules on both stores, though lago-api's single-event service on the ClickHouse store skips
    # the model's checks (README "Specs: what the servers accept"): the mock's answers keep to the spec.
    validator = rules.event if state.config.validate else None
    errors, stored = judge_event(validator, event, Reception.now(), postgres=state.lago.kind == "postgres")
    if errors or stored is None:
        # Validation fails before the INSERT, so the unique index never speaks for an invalid event.
        return lago_unprocessable(errors)
    if state.lago.commit([key_of(event)], [stored]):
        return lago_unprocessable({"transaction_id": ["value_already_exist"]})
    return JsonResponse({"event": _as_answered(stored, state)})


async def create_batch_events(request: Request, state: MockState) -> Response:
    rules = state.rules.lago
    try:
        events = await _top_level(request, "events", rules.batch_max_bytes, list)
    except _Refused as refused:
        return refused.response
    if len(events) < max(rules.min_batch_events, 1):
        return lago_unprocessable({"events": ["no_events"]})
    if len(events) > rules.max_batch_events:
        return lago_unprocessable({"events": ["too_many_events"]})
    validator = rules.event if state.config.validate else None
    received = Reception.now()
    by_index: dict[int, FieldErrors] = {}
    stored_events: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        errors, stored = judge_event(validator, event, received, postgres=state.lago.kind == "postgres")
        if errors or stored is None:
            by_index[index] = errors
        else:
            stored_events.append(stored)
    if by_index:
        # The server answers validation errors before it saves anything: no duplicate is looked for.
        return lago_unprocessable({str(index): by_index[index] for index in sorted(by_index)})
    # All-or-nothing: the store checks every key, and stores only when none is a duplicate.
    duplicates = state.lago.commit([key_of(event) for event in events], stored_events)
    if duplicates:
        return lago_unprocessable(
            {str(index): {"transaction_id": ["value_already_exist"]} for index in duplicates}
        )
    return JsonResponse({"events": [_as_answered(stored, state) for stored in stored_events]})


def _as_answered(stored: dict[str, Any], state: MockState) -> dict[str, Any]:
    """The EventObject a write answers. The ClickHouse store saves no row before answering, so the row's
    `lago_id` and `created_at` are still null (lago-api: the event is serialized unsaved)."""
    if state.lago.kind == "clickhouse":
        return {**stored, "lago_id": None, "created_at": None}
    return stored


async def estimate_fees(request: Request, state: MockState) -> Response:
    rules = state.rules.lago
    try:
        event = await _top_level(request, "event", rules.estimate_max_bytes, dict)
    except _Refused as refused:
        return refused.response
    # lago-api's Events::ValidateCreationService checks the subscription, then the timestamp, then the
    # metric: a blank subscription or code is answered as not found, never as a missing field.
    subscription = event.get("external_subscription_id")
    if subscription in (None, "") or (
        isinstance(subscription, str) and subscription not in state.catalogue.subscriptions
    ):
        return lago_not_found("subscription_not_found")
    blank_code = event.get("code") in (None, "")
    errors: FieldErrors = {}
    if state.config.validate:
        field_errors(rules.estimate_event, event, errors)
        if blank_code:
            errors.pop("code", None)
    elif not isinstance(subscription, str) or not (blank_code or isinstance(event.get("code"), str)):
        errors["event"] = ["value_is_invalid"]
    if errors:
        return lago_unprocessable(errors)
    try:
        fees = estimate(state.catalogue, event)
    except EstimateRefused as refused:
        if refused.code is not None:
            return lago_not_found(refused.code)
        return lago_unprocessable(refused.details)
    return JsonResponse({"fees": fees})


def transaction_id_of(request: Request) -> str | None:
    """The path parameter decoded from the raw path, so `%2F` inside an id is a slash of the id."""
    raw_path = request.scope.get("raw_path")
    if isinstance(raw_path, bytes):
        raw = raw_path.decode("latin-1")
        if raw.startswith(FIND_PREFIX):
            try:
                return unquote(raw[len(FIND_PREFIX) :], encoding="utf-8", errors="strict")
            except UnicodeDecodeError:
                return None
    value = request.path_params.get("transaction_id")
    return value if isinstance(value, str) else None


async def find_event(request: Request, state: MockState) -> Response:
    transaction_id = transaction_id_of(request)
    store = state.lago
    event = store.find(transaction_id) if transaction_id else None
    if event is None:
        return lago_not_found("event_not_found")
    if isinstance(store, ClickhouseLagoStore):
        # The ClickHouse store answers from its raw events table, not from a saved model.
        event = raw_row(event, store.organization_id)
    return JsonResponse({"event": event})
