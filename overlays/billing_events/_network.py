"""A sync network backend whose every socket operation ends by the current attempt's deadline.

httpcore gives each read, write and connect its own timeout, so a server that sends its
status line and headers one byte at a time never trips one, and the sync transport has no
other way to cut a request before its headers are complete. This backend lowers each
operation's timeout to what is left of the attempt (``attempt_deadline``), read at the
operation itself: connections are pooled, and a later request on the same connection has
its own deadline.

An expired connect raises ``httpcore.ConnectTimeout`` (nothing of the request was sent), an
expired read or write ``httpcore.ReadTimeout`` / ``WriteTimeout`` (the server may have it);
httpx maps them to its own timeouts.
"""

from __future__ import annotations

import contextvars
import ssl
import time
from collections.abc import Iterable

import httpcore
import httpx

# Absolute time.monotonic() at which the request being made in this context must end.
_attempt_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "attempt_deadline", default=None
)
set_attempt_deadline = _attempt_deadline.set
reset_attempt_deadline = _attempt_deadline.reset

# Writes go out in pieces, each with a fresh timeout: a slow reader cannot stretch one long write.
WRITE_PIECE = 64 * 1024


def _cut(timeout: float | None, expired: type[httpcore.TimeoutException]) -> float | None:
    """``timeout`` lowered to what is left of the attempt; ``expired`` once nothing is left."""
    deadline = _attempt_deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        # Never a 0 timeout: that would make the socket non-blocking, not bounded.
        raise expired("the attempt's deadline has passed")
    return left if timeout is None or timeout > left else timeout


class DeadlineStream(httpcore.NetworkStream):
    """A stream whose reads, writes and TLS handshakes end by the attempt's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _cut(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if len(buffer) <= WRITE_PIECE:
            self._inner.write(buffer, _cut(timeout, httpcore.WriteTimeout))
            return
        for start in range(0, len(buffer), WRITE_PIECE):
            piece = buffer[start : start + WRITE_PIECE]
            self._inner.write(piece, _cut(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        # The handshake's timeout bounds the whole handshake (Python's ssl module keeps one deadline).
        tls = self._inner.start_tls(ssl_context, server_hostname, _cut(timeout, httpcore.ConnectTimeout))
        return DeadlineStream(tls)

    def get_extra_info(self, info: str) -> object:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """Wraps a sync backend (default: httpcore's sockets): its streams end by the attempt's deadline."""

    def __init__(self, inner: httpcore.NetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _cut(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(path, _cut(timeout, httpcore.ConnectTimeout), socket_options)
        return DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def bounded_http_transport(limits: httpx.Limits, proxy: str | None) -> httpx.HTTPTransport:
    """``httpx.HTTPTransport`` (TLS, ``proxy`` and ``limits`` as httpx does them) on a ``DeadlineBackend``.

    httpx does not take a network backend, so it is swapped into the pool it built (proxy
    pools included) before any connection exists; a change of those internals fails here, loudly.
    """
    transport = httpx.HTTPTransport(limits=limits, proxy=proxy)
    pool = transport._pool
    if not isinstance(pool, httpcore.ConnectionPool) or not isinstance(
        pool._network_backend, httpcore.NetworkBackend
    ):
        raise RuntimeError("httpx's transport no longer exposes its connection pool's network backend")
    pool._network_backend = DeadlineBackend(pool._network_backend)
    return transport
