"""Network backends under httpcore's pools: sync streams bounded by the attempt's deadline, async
streams that answer httpcore's idle-connection check cheaply, bounded host name lookups, and
the async clients' pools.

httpcore gives each read, write and connect its own timeout, so a server that sends its
status line and headers one byte at a time never trips one, and the sync transport has no
other way to cut a request before its headers are complete. This backend lowers each
operation's timeout to what is left of the attempt (``attempt_deadline``), read at the
operation itself: connections are pooled, and a later request on the same connection has
its own deadline.

An expired connect raises ``httpcore.ConnectTimeout`` (nothing of the request was sent), an
expired read or write ``httpcore.ReadTimeout`` / ``WriteTimeout`` (the server may have it);
httpx maps them to its own timeouts.

Python's resolver takes no timeout, and a lookup run in an executor holds that executor's
shutdown (``asyncio.run`` waits for it). ``resolve``/``aresolve`` run each lookup in a
daemon thread of its own and stop waiting for it at the connect's bound; the connect then
tries each address in turn with what is left. Connections are pooled, so a lookup is made
once per new connection, and an IP address is never looked up.

``Progress`` tells whether any byte of a request was written. The streams here mark it, for
the request in whose context they run. When an attempt that goes out through them is cut (the
async deadline, a cancellation, Ctrl-C) before its first write (waiting for a pooled connection,
a lookup, a TCP connect, a TLS handshake), the provider surely never saw it.

The async transport is ``ShardedAsyncTransport``: a small pool per request in flight, because
one pool's bookkeeping walks its connections pairwise (see its docstring).

The async pool asks every idle connection whether its socket is readable (a server's close)
each time it hands out or takes back a connection. Through anyio that lookup rebuilds a table
of the stream's attributes every call: with 16 requests in flight it was about a tenth of the
async client's CPU. ``ReadableCheckStream`` looks the socket up once per stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

import httpcore
import httpx

from billing_events._aiostream import NativeBackend, NativeStream, socket_readable

# Absolute time.monotonic() at which the request being made in this context must end.
_attempt_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "attempt_deadline", default=None
)
set_attempt_deadline = _attempt_deadline.set
reset_attempt_deadline = _attempt_deadline.reset

T = TypeVar("T")


class Progress:
    """How far a request got on the wire; set by the bounded transports and this module's streams, read
    when the request is cut."""

    __slots__ = ("entered_at", "sent", "watched")

    def __init__(self) -> None:
        # time.perf_counter() when the client's transport took the request (it was past the pacer's wait).
        self.entered_at: float | None = None
        self.watched = False  # every byte of it goes out through this module's streams, which mark ``sent``
        self.sent = False  # a byte of the request (or of a proxy's CONNECT) may have left

    def enter(self, watched: bool) -> None:
        """The client's transport takes the request now: its hooks (the pacer's wait) are behind it."""
        self.entered_at = time.perf_counter()
        self.watched = watched

    @property
    def entered(self) -> bool:
        return self.entered_at is not None

    def seconds(self) -> float:
        """The request's duration so far, from the moment its transport took it: a wait for the rate
        budget is no part of it (it has a metric of its own). 0 for a request that never got there (a
        hook or the rate budget kept it back)."""
        return 0.0 if self.entered_at is None else time.perf_counter() - self.entered_at

    @property
    def unsent(self) -> bool:
        """Nothing of the request left: it was cut before the transport took it (waiting for the rate
        budget), or before a byte of it was written by streams that mark their writes (waiting for a
        pooled connection, making a new one)."""
        return not self.entered or (self.watched and not self.sent)


_progress: contextvars.ContextVar[Progress | None] = contextvars.ContextVar("attempt_progress", default=None)
set_progress = _progress.set
reset_progress = _progress.reset


def _mark_sent() -> None:
    progress = _progress.get()
    if progress is not None:
        progress.sent = True


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _lookup(host: str, port: int) -> list[str] | BaseException:
    """The host's addresses, or the error that the caller's thread raises (see ``_addresses``)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except BaseException as exc:
        return exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def resolve(host: str, port: int, timeout: float | None) -> list[str]:
    """The addresses of ``host``; ``httpcore.ConnectTimeout`` if the lookup outlasts ``timeout``."""
    if _is_address(host):
        return [host]
    done = threading.Event()
    answer: list[Any] = []

    def look_up() -> None:
        answer.append(_lookup(host, port))
        done.set()

    threading.Thread(target=look_up, name="billing-events-lookup", daemon=True).start()
    if not done.wait(timeout):
        raise httpcore.ConnectTimeout(f"looking up the host took longer than {timeout:g} s")
    return _addresses(answer[0])


async def aresolve(host: str, port: int, timeout: float | None) -> list[str]:
    """``resolve`` for asyncio: the loop waits on a daemon thread, never on its executor."""
    if _is_address(host):
        return [host]
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[Any] = loop.create_future()

    def give(value: Any) -> None:
        if not answer.done():
            answer.set_result(value)

    def look_up() -> None:
        value = _lookup(host, port)
        with contextlib.suppress(RuntimeError):  # the loop closed while the lookup hung
            loop.call_soon_threadsafe(give, value)

    threading.Thread(target=look_up, name="billing-events-lookup", daemon=True).start()
    try:
        async with asyncio.timeout(timeout):
            value = await answer
    except TimeoutError:
        raise httpcore.ConnectTimeout(f"looking up the host took longer than {timeout:g} s") from None
    return _addresses(value)


def _addresses(value: Any) -> list[str]:
    if isinstance(value, BaseException):
        raise httpcore.ConnectError(f"looking up the host failed: {value}") from value
    if not value:
        raise httpcore.ConnectError("looking up the host found no address")
    addresses: list[str] = value
    return addresses


def _each_address(addresses: list[str], connect: Callable[[str], T]) -> T:
    """``connect`` to each address in turn; the last error if none answers."""
    for address in addresses[:-1]:
        with contextlib.suppress(httpcore.ConnectError):
            return connect(address)
    return connect(addresses[-1])


async def _each_address_async(addresses: list[str], connect: Callable[[str], Awaitable[T]]) -> T:
    for address in addresses[:-1]:
        with contextlib.suppress(httpcore.ConnectError):
            return await connect(address)
    return await connect(addresses[-1])


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
        _mark_sent()
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
        addresses = resolve(host, port, _cut(timeout, httpcore.ConnectTimeout))
        options = list(socket_options or ())

        def connect(address: str) -> httpcore.NetworkStream:
            cut = _cut(timeout, httpcore.ConnectTimeout)
            return self._inner.connect_tcp(address, port, cut, local_address, options)

        return DeadlineStream(_each_address(addresses, connect))

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
    _swap_backend(transport._pool, DeadlineBackend, httpcore.NetworkBackend)
    return transport


def _swap_backend(pool: object, wrap: Any, base: type) -> None:
    """Wrap the network backend of the pool httpx built; fail loudly if httpx's internals moved."""
    backend = getattr(pool, "_network_backend", None)
    if not isinstance(backend, base):
        raise RuntimeError("httpx's transport no longer exposes its connection pool's network backend")
    pool._network_backend = wrap(backend)  # type: ignore[attr-defined]


class ReadableCheckStream(httpcore.AsyncNetworkStream):
    """An async stream that finds its socket once, for httpcore's check of idle connections."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._native = isinstance(inner, NativeStream)  # it knows what it already took from the socket
        self._socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, _cut(timeout, httpcore.ReadTimeout))

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        _mark_sent()
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return ReadableCheckStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and not self._native:
            return socket_readable(self._socket)
        return self._inner.get_extra_info(info)


class ReadableCheckBackend(httpcore.AsyncNetworkBackend):
    """Wraps an async backend (default: httpcore's choice for the running library): see ``ReadableCheckStream``,
    ``aresolve`` and ``Progress``."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await aresolve(host, port, timeout)
        options = list(socket_options or ())

        async def connect(address: str) -> httpcore.AsyncNetworkStream:
            return await self._inner.connect_tcp(address, port, timeout, local_address, options)

        return ReadableCheckStream(await _each_address_async(addresses, connect))

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return ReadableCheckStream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


UNLIMITED_POOLS = 256


class ShardedAsyncTransport(httpx.AsyncBaseTransport):
    """Async HTTP on many small pools, one request at a time on each while there are enough of them.

    httpcore's pool walks all its connections, and for each idle one all of them again, every
    time it hands out or takes back a connection: at 16 requests in flight that walk cost the
    async client about 40% more CPU per event than at 4. Here each request takes a pool of its
    own (one connection, kept alive), so each walk sees one connection. Pools are made as the
    requests in flight need them, up to ``limits.max_connections``; beyond that, requests share
    the least busy pools, where they queue as they would in one pool.
    """

    def __init__(self, limits: httpx.Limits, proxy: str | None) -> None:
        self._proxy = proxy
        # No limit (None): as many pools as requests in flight, up to the most a client can have.
        self._cap = max(1, UNLIMITED_POOLS if limits.max_connections is None else limits.max_connections)
        self._shards: list[httpx.AsyncHTTPTransport] = []
        self._busy: list[int] = []
        self._idle: list[int] = []
        self._tls: ssl.SSLContext | None = None  # made once, with the first pool

    def _shard(self) -> httpx.AsyncHTTPTransport:
        if self._tls is None:
            # What each pool would have made: verified, with the environment's CA settings.
            self._tls = httpx.create_ssl_context()
        transport = httpx.AsyncHTTPTransport(
            verify=self._tls,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            proxy=self._proxy,
        )
        _swap_backend(
            transport._pool,
            lambda inner: ReadableCheckBackend(NativeBackend(inner)),
            httpcore.AsyncNetworkBackend,
        )
        return transport

    def _take(self) -> int:
        if self._idle:
            index = self._idle.pop()  # the most recently used: its connection is the likeliest alive
        elif len(self._shards) < self._cap:
            index = len(self._shards)
            self._shards.append(self._shard())
            self._busy.append(0)
        else:
            index = min(range(len(self._busy)), key=self._busy.__getitem__)
        self._busy[index] += 1
        return index

    @property
    def in_flight(self) -> int:
        """Requests holding a pool now: sent and not yet closed (their answers included)."""
        return sum(self._busy)

    def _give_back(self, index: int) -> None:
        self._busy[index] -= 1
        if not self._busy[index]:
            self._idle.append(index)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = self._take()
        try:
            response = await self._shards[index].handle_async_request(request)
        except BaseException:
            self._give_back(index)
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _GivenBackOnClose(response.stream, lambda: self._give_back(index))
        return response

    async def aclose(self) -> None:
        for shard in self._shards:
            await shard.aclose()


class _GivenBackOnClose(httpx.AsyncByteStream):
    """A response body that hands its pool back when it is closed, once."""

    def __init__(self, inner: httpx.AsyncByteStream, give_back: Callable[[], None]) -> None:
        self._inner = inner
        self._give_back: Callable[[], None] | None = give_back

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._inner.__aiter__()  # the inner stream's own iterator: no layer per chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            give_back, self._give_back = self._give_back, None
            if give_back is not None:
                give_back()


def async_http_transport(limits: httpx.Limits, proxy: str | None) -> httpx.AsyncBaseTransport:
    """Async HTTP as httpx does it (TLS, ``proxy``), over ``ShardedAsyncTransport``'s small pools, each on a
    ``ReadableCheckBackend`` swapped in like ``bounded_http_transport``'s."""
    return ShardedAsyncTransport(limits, proxy)
