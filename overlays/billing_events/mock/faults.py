"""Fault injection: a seeded draw per public request, and the dropped connection it can cause."""

from __future__ import annotations

import enum
import logging
import random
import threading
from collections.abc import Mapping

from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send

from billing_events.mock.config import FaultConfig


class Fault(enum.Enum):
    """One member per rate of FaultConfig, in the same order."""

    THROTTLED = "429"
    UNAVAILABLE = "503"
    DROP = "drop"
    LOST_RESPONSE = "lost_response"
    GATEWAY = "gateway"
    HTML_OK = "html_ok"


class ConnectionDropped(Exception):
    """Raised after the response head is sent, so the server closes the connection mid-response."""


class FaultInjector:
    """The current fault configuration and its RNG; safe to share between threads and event loops."""

    def __init__(self, startup: FaultConfig) -> None:
        self._lock = threading.Lock()
        self._startup = startup
        self._config = startup
        self._rng = random.Random(startup.seed)

    @property
    def config(self) -> FaultConfig:
        with self._lock:
            return self._config

    def update(self, changes: Mapping[str, object]) -> FaultConfig:
        """Apply a partial update; a new `seed` restarts the RNG so the following draws are reproducible."""
        with self._lock:
            self._config = self._config.updated(changes)
            if "seed" in changes:
                self._rng.seed(self._config.seed)
            return self._config

    def reset(self) -> FaultConfig:
        with self._lock:
            self._config = self._startup
            self._rng.seed(self._startup.seed)
            return self._config

    def draw(self) -> tuple[Fault | None, FaultConfig]:
        """One draw per request; the rates are consecutive slices of [0, 1)."""
        with self._lock:
            config = self._config
            point = self._rng.random()
        threshold = 0.0
        for fault, rate in zip(Fault, config.rates(), strict=True):
            threshold += rate
            if point < threshold:
                return fault, config
        return None, config


class DroppedConnection(Response):
    """Announces a body, sends part of it, then aborts: the client sees an incomplete response."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        head = [(b"content-type", b"application/json"), (b"content-length", b"64")]
        await send({"type": "http.response.start", "status": self.status_code, "headers": head})
        await send({"type": "http.response.body", "body": b'{"dropped', "more_body": True})
        raise ConnectionDropped("connection dropped by fault injection")


GATEWAY_PAGE = """<!DOCTYPE html>
<html><head><title>{status}: the origin server answered with an unknown error</title></head>
<body><h1>Error {status}</h1><p>The gateway could not get a valid answer from the origin server.</p></body></html>
"""

PORTAL_PAGE = """<!DOCTYPE html>
<html><head><title>Network sign-in</title></head>
<body><h1>Welcome to the guest network</h1><form method="post"><button>Accept and connect</button></form></body></html>
"""


def gateway_error(status: int) -> Response:
    """A gateway's own HTML error page: the request never reached the API, so nothing is stored."""
    return HTMLResponse(GATEWAY_PAGE.format(status=status), status_code=status)


def captive_portal() -> Response:
    """200 with an HTML page instead of the API's answer: nothing reached the API."""
    return HTMLResponse(PORTAL_PAGE, status_code=200)


class _InjectedDropFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc_info = record.exc_info
        return not (exc_info and exc_info[0] is not None and issubclass(exc_info[0], ConnectionDropped))


def silence_injected_drops(logger_name: str = "uvicorn.error") -> None:
    """Keep uvicorn from logging a traceback for every connection the mock drops on purpose."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(existing, _InjectedDropFilter) for existing in logger.filters):
        logger.addFilter(_InjectedDropFilter())
