"""Serve the mock on a socket until SIGTERM or Ctrl-C: `billing-events mock` and `python -m billing_events.mock`.

Environment, for both: MOCK_PORT, MOCK_TOKEN (default `test-token`), MOCK_FAULTS (JSON fault configuration),
MOCK_CATALOGUE (path of a catalogue file for estimate_fees), MOCK_LAGO_STORE (`postgres`, the default, or
`clickhouse`), MOCK_RESTRICTED_TOKEN (a Lago key that may not write events), MOCK_MAX_EVENTS (events each
store keeps, or `none`).
"""

from __future__ import annotations

import signal
import socket
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TextIO

import uvicorn
from starlette.applications import Starlette

from billing_events.mock.config import (
    DEFAULT_CATALOGUE,
    DEFAULT_MAX_EVENTS,
    DEFAULT_TOKEN,
    LAGO_PREFIX,
    LAGO_STORES,
    SERVER_STACK,
    TOGAI_PREFIX,
    FaultConfig,
    MockConfig,
)
from billing_events.mock.faults import silence_injected_drops
from billing_events.mock.ratelimit import RateLimitConfig
from billing_events.text import shown

HOST = "127.0.0.1"
DEFAULT_PORT = 8910
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


# The largest TCP port; bind() raises OverflowError, not OSError, past it.
MAX_PORT = 65535


def port_from(text: str) -> int:
    """MOCK_PORT: a whole number from 0 (a free port) to MAX_PORT; leading zeros allowed."""
    significant = text.lstrip("0") or "0"
    # Its length first: int() refuses a number past 4,300 digits with a ValueError of its own.
    if not (text.isascii() and text.isdigit()) or len(significant) > 5 or int(significant) > MAX_PORT:
        raise ValueError(f"MOCK_PORT must be a port number from 0 to {MAX_PORT}, got {shown(text)}")
    return int(significant)


def config_from_env(env: Mapping[str, str]) -> tuple[MockConfig, int]:
    port = port_from(env.get("MOCK_PORT") or str(DEFAULT_PORT))
    faults_json = env.get("MOCK_FAULTS")
    faults = FaultConfig.from_json(faults_json) if faults_json else FaultConfig()
    catalogue = Path(env.get("MOCK_CATALOGUE") or DEFAULT_CATALOGUE)
    lago_store = env.get("MOCK_LAGO_STORE") or "postgres"
    if lago_store not in LAGO_STORES:
        raise ValueError(f"MOCK_LAGO_STORE must be one of {', '.join(LAGO_STORES)}, got {shown(lago_store)}")
    return MockConfig(
        max_events=max_events_from(env.get("MOCK_MAX_EVENTS")),
        token=env.get("MOCK_TOKEN") or DEFAULT_TOKEN,
        faults=faults,
        catalogue_path=catalogue,
        lago_store=lago_store,
        restricted_token=env.get("MOCK_RESTRICTED_TOKEN") or None,
        rate_limits=RateLimitConfig.from_text(env.get("MOCK_RATE_LIMITS") or "off"),
    ), port


def max_events_from(text: str | None) -> int | None:
    """MOCK_MAX_EVENTS: a positive number of events, or ``none`` for no limit; unset: the default."""
    if not text:
        return DEFAULT_MAX_EVENTS
    if text.strip().lower() == "none":
        return None
    if not (text.strip().isascii() and text.strip().isdigit()) or int(text) < 1:
        raise ValueError(f"MOCK_MAX_EVENTS must be a positive number of events or none, got {text[:40]!r}")
    return int(text)


def listen(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one. Raises OSError when the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        # Listening before the banner: a client that reads the URL can connect at once.
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def origin_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if sock.family == socket.AF_INET6 else f"http://{host}:{port}"


@contextmanager
def _stop_signals_stop(server: uvicorn.Server) -> Iterator[None]:
    """SIGTERM and SIGINT stop `server` gracefully, whenever they arrive, and leave the process alive.

    uvicorn handles both while it runs, then re-raises the one it stopped on into the handler it found: with
    the default handlers that kills the process (SIGTERM) or raises KeyboardInterrupt (SIGINT). Ours asks
    the server to stop instead, which also covers a signal that arrives before uvicorn installs its own.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(_signum: int, _frame: FrameType | None) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve(app: Starlette, sock: socket.socket, out: TextIO | None = None) -> None:
    """Serve `app` (from `create_app`) on `sock` until SIGTERM or Ctrl-C; prints the base URLs and token first."""
    out = out or sys.stdout
    config: MockConfig = app.state.mock.config
    server_config = uvicorn.Config(
        app, log_level="info", access_log=False, timeout_graceful_shutdown=5, lifespan="off", **SERVER_STACK
    )
    # After uvicorn.Config, which configures logging: the filter must sit on the configured logger.
    silence_injected_drops()
    origin = origin_of(sock)
    server = uvicorn.Server(server_config)
    # Before the banner: whoever reads it may stop the server at once.
    with _stop_signals_stop(server):
        print(f"Togai base URL: {origin}{TOGAI_PREFIX}", file=out, flush=True)
        print(f"Lago base URL:  {origin}{LAGO_PREFIX}", file=out, flush=True)
        print(f"Bearer token:   {config.token}", file=out, flush=True)
        print(f"Faults:         {config.faults.to_dict()}", file=out, flush=True)
        print(f"Lago store:     {config.lago_store}", file=out, flush=True)
        print(f"Rate limits:    {config.rate_limits.to_dict()}", file=out, flush=True)
        limit = "none" if config.max_events is None else f"{config.max_events} events per store"
        print(f"Store limit:    {limit}", file=out, flush=True)
        server.run(sockets=[sock])
    print("Mock stopped.", file=out, flush=True)
