"""Ways for tests to reach the mock: a real server on a free port, or in-process httpx transports.

All three surface an injected connection drop as an `httpx.TransportError` subclass, as a real network would.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import threading
import weakref
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp

from billing_events.mock.app import create_app
from billing_events.mock.config import LAGO_STORES, SERVER_STACK, MockConfig
from billing_events.mock.faults import ConnectionDropped, silence_injected_drops

__all__ = ["LAGO_STORES", "async_transport", "mock_app", "serve_in_thread", "sync_transport"]

T = TypeVar("T")
DROPPED_MESSAGE = "the mock dropped the connection before the response was complete"
TIMED_OUT_MESSAGE = "the mock did not answer within the read timeout"
CLOSED_MESSAGE = "the mock transport was closed while the request was in flight"
SERVER_START_TIMEOUT = 10.0
# How long a closing in-process transport lets the requests it cancelled unwind.
CANCEL_TIMEOUT = 5.0


def _read_timeout(request: httpx.Request) -> float | None:
    """The request's read timeout: in-process, the whole answer comes at once, so it bounds the whole wait."""
    timeout = request.extensions.get("timeout") or {}
    read = timeout.get("read")
    return None if read is None else float(read)


def mock_app(lago_store: str = "postgres", **settings: Any) -> Starlette:
    """A fresh mock whose Lago behaves like the named event store; `settings` are MockConfig fields.

    Parametrize a test over `LAGO_STORES` to run it against both stores.
    """
    return create_app(MockConfig(lago_store=lago_store, **settings))


class _NotifyingServer(uvicorn.Server):
    """A uvicorn server that tells the starting thread when it is listening (or has given up)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    def run_until_stopped(self, sockets: list[socket.socket]) -> None:
        try:
            self.run(sockets=sockets)
        finally:
            self.ready.set()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()


@contextmanager
def serve_in_thread(app: ASGIApp, host: str = "127.0.0.1", **settings: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on a free port in a background thread; yields its base URL.

    `settings` go to `uvicorn.Config`: `ssl_certfile` and `ssl_keyfile` serve it over TLS (the URL
    still says `http://`; use `https://`).
    """
    silence_injected_drops()
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on TCP-protocol sockets, and without it every
    # response waits ~40 ms for a delayed ACK (Nagle), capping a connection at ~22 requests/s.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, 0))
    port = listener.getsockname()[1]
    # log_config=None and log_level=None: leave the test process's logging configuration, and the levels
    # of uvicorn's loggers (which a user's own uvicorn app in a later test uses), alone.
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
        log_level=None,
        **{**SERVER_STACK, **settings},
    )
    server = _NotifyingServer(config)
    thread = threading.Thread(
        target=server.run_until_stopped, args=([listener],), name=f"mock-server-{port}", daemon=True
    )
    thread.start()
    try:
        if not server.ready.wait(SERVER_START_TIMEOUT) or not server.started:
            raise RuntimeError(f"the mock server did not start on {host}:{port}")
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(SERVER_START_TIMEOUT)
        listener.close()


class _MockAsyncTransport(httpx.AsyncBaseTransport):
    def __init__(self, app: ASGIApp) -> None:
        self._asgi = httpx.ASGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            # As a socket's read timeout would: the mock stops handling a request its client gave up on.
            with anyio.fail_after(_read_timeout(request)):
                return await self._asgi.handle_async_request(request)
        except ConnectionDropped as exc:
            raise httpx.RemoteProtocolError(DROPPED_MESSAGE, request=request) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout(TIMED_OUT_MESSAGE, request=request) from exc

    async def aclose(self) -> None:
        await self._asgi.aclose()


def async_transport(app: ASGIApp) -> httpx.AsyncBaseTransport:
    """An in-process transport for `httpx.AsyncClient`."""
    return _MockAsyncTransport(app)


class _Closed(Exception):
    """The loop thread was stopped before (or while) a call ran on it."""

    def __init__(self, started: bool) -> None:
        super().__init__()
        self.started = started


class _LoopThread:
    """An asyncio loop on a daemon thread, so synchronous callers in any thread can run the app on it.

    ``stop()`` ends the calls still waiting on it (``_Closed``), so no caller's thread waits for ever.
    """

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._waiting: set[concurrent.futures.Future[Any]] = set()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="mock-transport-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            # Requests still on the loop (their callers already gave up) unwind before it closes.
            tasks = asyncio.all_tasks(self._loop)
            for task in tasks:
                task.cancel()
            if tasks:
                self._loop.run_until_complete(asyncio.wait(tasks, timeout=CANCEL_TIMEOUT))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """The coroutine's result; TimeoutError (the coroutine cancelled) after ``timeout`` seconds."""
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("the mock transport cannot be called from its own event loop")
        with self._lock:
            if self._stopped:
                coroutine.close()
                raise _Closed(started=False)
            future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
            self._waiting.add(future)
        try:
            return future.result(timeout)
        except concurrent.futures.CancelledError:
            raise _Closed(started=True) from None
        except TimeoutError:
            future.cancel()
            raise
        finally:
            with self._lock:
                self._waiting.discard(future)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            waiting = list(self._waiting)
        for future in waiting:
            future.cancel()  # its caller gets _Closed at once; the request is cancelled on the loop
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            # The last reference to a transport may go on the loop itself (a request its caller gave up on):
            # that thread ends once the loop stops, and cannot wait for itself.
            if threading.current_thread() is not self._thread:
                self._thread.join()


class _MockSyncTransport(httpx.BaseTransport):
    def __init__(self, app: ASGIApp) -> None:
        self._inner = _MockAsyncTransport(app)
        self._loop = _LoopThread()
        # Stops the loop thread even when a client is never closed.
        self._finalizer = weakref.finalize(self, self._loop.stop)

    async def _exchange(self, request: httpx.Request) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        response = await self._inner.handle_async_request(request)
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        return response.status_code, response.headers.raw, content

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        # The body is read here, so iterator bodies of the calling thread never cross into the loop thread.
        body = request.read()
        replica = httpx.Request(request.method, request.url, headers=request.headers, content=body)
        try:
            status, headers, content = self._loop.run(self._exchange(replica), _read_timeout(request))
        except httpx.TransportError as exc:
            raise type(exc)(str(exc), request=request) from exc
        except TimeoutError:
            raise httpx.ReadTimeout(TIMED_OUT_MESSAGE, request=request) from None
        except _Closed as closed:
            if not closed.started:
                raise httpx.ConnectError("the mock transport is closed", request=request) from None
            raise httpx.ReadError(CLOSED_MESSAGE, request=request) from None
        return httpx.Response(status, headers=headers, content=content)

    def close(self) -> None:
        self._finalizer()


def sync_transport(app: ASGIApp) -> httpx.BaseTransport:
    """An in-process transport for `httpx.Client`, usable from any thread; `close()` stops its loop thread."""
    return _MockSyncTransport(app)
