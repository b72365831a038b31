"""Togai's `POST /ingest` and `POST /ingestBatch`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from billing_events.mock.bodies import FALLBACK_MAX_BYTES, BodyProblem, BodyRejected, read_json
from billing_events.mock.errors import togai_error, truncate
from billing_events.mock.jsonio import JsonResponse
from billing_events.mock.schemas import describe, is_valid, schema_errors
from billing_events.mock.state import MockState

# How many schema errors one message lists before it is cut.
MAX_LISTED_ERRORS = 5


def accepted() -> Response:
    return JsonResponse({"success": True}, status_code=202)


def _body_error(rejection: BodyRejected) -> Response:
    # Togai answers 422 for oversized payloads; every other unreadable body is a 400.
    status = 422 if rejection.problem is BodyProblem.TOO_LARGE else 400
    return togai_error(status, rejection.detail)


def _joined(messages: list[str]) -> str:
    shown = "; ".join(messages[:MAX_LISTED_ERRORS])
    hidden = len(messages) - MAX_LISTED_ERRORS
    return f"{shown}; and {hidden} more" if hidden > 0 else shown


async def ingest(request: Request, state: MockState) -> Response:
    rules = state.rules.togai
    try:
        body = await read_json(request, rules.ingest_max_bytes or FALLBACK_MAX_BYTES)
    except BodyRejected as rejection:
        return _body_error(rejection)
    if not isinstance(body, dict):
        return togai_error(400, "the request body must be a JSON object with an `event`")
    if state.config.validate:
        problems = [describe(error) for error in schema_errors(rules.ingest, body)]
        if problems:
            return togai_error(400, _joined(problems))
    elif not isinstance(body.get("event"), dict):
        return togai_error(400, "event: must be an object")
    state.togai.add([body["event"]])
    return accepted()


def _rejection(index: int, event: object, message: str) -> dict[str, Any]:
    rejected: dict[str, Any] = {"index": index, "message": truncate(message)}
    if isinstance(event, dict) and isinstance(event.get("id"), str):
        rejected["id"] = event["id"]
    return rejected


def _judge_events(state: MockState, events: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split a batch into accepted events and rejection entries, judging each event on its own."""
    validator = state.rules.togai.event
    if not state.config.validate:
        good = [event for event in events if isinstance(event, dict)]
        bad = [
            _rejection(i, event, "must be an object")
            for i, event in enumerate(events)
            if not isinstance(event, dict)
        ]
        return good, bad
    # One pass over the whole batch is the common case; per-event errors are only gathered when it fails.
    # Both checks judge a lone surrogate as U+FFFD (Togai, a JVM, takes such text), and store the event as sent.
    if all(is_valid(validator, event) for event in events):
        return events, []
    accepted_events: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for index, event in enumerate(events):
        problems = [describe(error) for error in schema_errors(validator, event)]
        if problems:
            rejected.append(_rejection(index, event, _joined(problems)))
        else:
            accepted_events.append(event)
    return accepted_events, rejected


async def ingest_batch(request: Request, state: MockState) -> Response:
    rules = state.rules.togai
    try:
        body = await read_json(request, rules.batch_max_bytes or FALLBACK_MAX_BYTES)
    except BodyRejected as rejection:
        return _body_error(rejection)
    if not isinstance(body, dict):
        return togai_error(400, "the request body must be a JSON object with `events`")
    problems = [describe(error) for error in schema_errors(rules.batch_envelope, body)]
    if problems:
        return togai_error(400, _joined(problems))
    events: list[Any] = body["events"]
    if len(events) > rules.max_batch_events:
        return togai_error(
            422, f"events: at most {rules.max_batch_events} events per request, got {len(events)}"
        )
    if not events:  # only reachable with validation off: the spec's minItems refuses it first
        return togai_error(400, "events: must hold at least 1 event")
    accepted_events, rejected = _judge_events(state, events)
    if not accepted_events:
        messages = [f"events[{entry['index']}]: {entry['message']}" for entry in rejected]
        return togai_error(400, f"no event was accepted: {_joined(messages)}")
    state.togai.add(accepted_events)
    if not rejected:
        return accepted()
    body_207: dict[str, Any] = {
        "success": False,
        "statusCode": 207,
        "message": f"{len(rejected)} of {len(events)} events were not accepted",
    }
    if state.faults.config.togai_207_detail:
        body_207["details"] = {"rejectedEvents": rejected}
    return JsonResponse(body_207, status_code=207)
