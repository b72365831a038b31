"""A scripted stand-in server for precise overlay tests: answers in order, records every request."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import httpx

Answer = httpx.Response | Callable[[httpx.Request], httpx.Response] | BaseException


class Scripted:
    """An httpx.MockTransport handler. After the script runs out it answers ``default``."""

    def __init__(self, *script: Answer, default: Answer | None = None) -> None:
        self.script = list(script)
        self.default = default
        self.requests: list[httpx.Request] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.requests.append(request)
            answer = self.script.pop(0) if self.script else self.default
        if answer is None:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        if isinstance(answer, BaseException):
            raise answer
        if callable(answer):
            return answer(request)
        return answer

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(request.content) for request in self.requests]

    def sent_keys(self, key_field: str) -> list[list[str]]:
        return [[event[key_field] for event in body["events"]] for body in self.bodies()]


def accepted(request: httpx.Request) -> httpx.Response:
    return httpx.Response(202, json={"success": True})


def lago_ok(request: httpx.Request) -> httpx.Response:
    """Lago's 200: it echoes the events it accepted."""
    return httpx.Response(200, json={"events": json.loads(request.content)["events"]})


def togai_event(number: int, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "schemaName": "api_calls",
        "timestamp": "2024-05-01T10:15:30Z",
        "accountId": f"account-{number % 7}",
        "attributes": [{"name": "calls", "value": str(number)}],
        "dimensions": {"region": "eu-west-1"},
    }
    event.update(changes)
    return event


def lago_event(number: int, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "transaction_id": f"txn-{number}",
        "external_subscription_id": f"sub-{number % 5}",
        "code": "api_calls",
        "timestamp": 1714558530 + number,
        "properties": {"calls": number},
    }
    event.update(changes)
    return event


def lago_422(details: object) -> httpx.Response:
    body = {
        "status": 422,
        "error": "Unprocessable Entity",
        "code": "validation_errors",
        "error_details": details,
    }
    return httpx.Response(422, json=body)


class TogaiLike:
    """Togai's batch semantics in a few lines: ids deduplicated, a partial failure a 207 with no detail.

    An event whose attribute value is not numeric is refused; the others of its batch are stored.
    """

    def __init__(self) -> None:
        self.stored: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        events = json.loads(request.content)["events"]
        refused = False
        with self.lock:
            for event in events:
                if all(
                    str(a["value"]).lstrip("-").replace(".", "", 1).isdigit() for a in event["attributes"]
                ):
                    self.stored.setdefault(event["id"], event)
                else:
                    refused = True
        if refused:
            return httpx.Response(207, json={"success": False, "message": "Few events were not accepted"})
        return httpx.Response(202, json={"success": True})


class LagoLike:
    """Lago's Postgres store: a repeated (subscription, id) refused, batches all or nothing, and rows of a
    batch matched by transaction_id alone (the same id twice in one batch looks like a duplicate)."""

    def __init__(self) -> None:
        self.stored: dict[tuple[str, str], dict[str, Any]] = {}
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        events = json.loads(request.content)["events"]
        errors: dict[str, Any] = {}
        with self.lock:
            seen: set[str] = set()
            for index, event in enumerate(events):
                key = (event["external_subscription_id"], event["transaction_id"])
                if key in self.stored or event["transaction_id"] in seen:
                    errors[str(index)] = {"transaction_id": ["value_already_exist"]}
                seen.add(event["transaction_id"])
            if errors:
                return lago_422(errors)
            for event in events:
                self.stored[(event["external_subscription_id"], event["transaction_id"])] = event
        return httpx.Response(200, json={"events": events})
