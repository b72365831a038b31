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
    return httpx.Response(200, json={"events": []})


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
