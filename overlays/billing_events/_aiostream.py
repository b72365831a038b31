"""httpcore network streams on asyncio's own transports, for the async clients under asyncio.

httpcore runs under asyncio through anyio: each read and each write opens a cancel scope
(``anyio.fail_after``), asks sniffio which library runs, and yields to the loop once more
(anyio's checkpoint), before it touches the socket. With 16 requests in flight that machinery
cost the async Lago client about a tenth of its CPU. anyio has no cheaper call for one bounded
read, and httpcore has no backend of asyncio's own, so this module is one: a protocol that
keeps what the socket gave, and reads that wait on one future with a timer beside it.

The streams here behave as httpcore's anyio streams do: a read returns at most ``max_bytes``
of what arrived and ``b""`` at the end of the stream; an expired read, write, connect or TLS
handshake raises httpcore's ``ReadTimeout``, ``WriteTimeout`` or ``ConnectTimeout``, and a
broken connection ``ReadError``, ``WriteError`` or ``ConnectError``. A cancelled task is
cancelled as usual. What the socket gives is kept up to ``READ_HIGH_WATER`` bytes; beyond that
the transport stops reading until the stream is read.

Under any other library (trio) ``NativeBackend`` hands every call to httpcore's own choice.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import ssl
import time
from collections.abc import Iterable
from typing import Any

import httpcore
import sniffio

# Bytes kept from the socket before the transport pauses its reads.
READ_HIGH_WATER = 256 * 1024


class _Feed(asyncio.Protocol):
    """What one connection's transport gives: its bytes, its end, its error, and its write pauses."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.eof = False
        self.lost = False
        self.error: BaseException | None = None
        self.reading_paused = False
        self.writing_paused = False
        self.reader: asyncio.Future[None] | None = None  # a read waiting for bytes or the end
        self.writer: asyncio.Future[None] | None = None  # a write waiting for the transport to drain

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > READ_HIGH_WATER and not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        # Half-open, as anyio keeps it: the server's end of sending; our side closes with the stream.
        # A TLS transport cannot stay half-open (and warns when asked to).
        return self.transport is not None and self.transport.get_extra_info("ssl_object") is None

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = self.lost = True
        self.error = exc
        self._wake()

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._wake()

    def _wake(self) -> None:
        for waiter in (self.reader, self.writer):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def take(self, max_bytes: int) -> bytes:
        first = self.chunks[0]
        if len(first) <= max_bytes:
            self.chunks.pop(0)
        else:
            first, self.chunks[0] = first[:max_bytes], first[max_bytes:]
        self.size -= len(first)
        if self.reading_paused and self.size <= READ_HIGH_WATER // 2 and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()
        return first


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


async def _wait(feed: _Feed, role: str, timeout: float | None) -> None:
    """Until ``feed`` wakes its ``role`` ("reader" or "writer"); ``TimeoutError`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()
    setattr(feed, role, waiter)
    timer = None if timeout is None else loop.call_later(max(0.0, timeout), _expire, waiter)
    try:
        await waiter
    finally:
        setattr(feed, role, None)
        if timer is not None:
            timer.cancel()


class NativeStream(httpcore.AsyncNetworkStream):
    """One connection (TCP, Unix or TLS) on an asyncio transport."""

    def __init__(self, transport: asyncio.Transport, feed: _Feed) -> None:
        self._transport = transport
        self._feed = feed
        self._loop = asyncio.get_running_loop()

    def _loop_gone(self) -> bool:
        """Whether the connection's event loop is not the one running now (a later ``asyncio.run()``)."""
        try:
            return asyncio.get_running_loop() is not self._loop
        except RuntimeError:
            return self._loop.is_closed()

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        feed = self._feed
        end = None
        while not feed.chunks:
            if feed.error is not None:
                raise httpcore.ReadError(f"the connection broke: {feed.error!r}")
            if feed.eof:
                return b""
            if end is None and timeout is not None:
                end = time.monotonic() + timeout  # one end for the whole read, however often it wakes
            try:
                await _wait(feed, "reader", None if end is None else end - time.monotonic())
            except TimeoutError:
                raise httpcore.ReadTimeout("no answer within the read timeout") from None
        return feed.take(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        feed = self._feed
        if feed.lost or self._transport.is_closing():
            raise httpcore.WriteError("the connection is closed")
        self._transport.write(buffer)
        # One end for the whole write: bytes the server sends meanwhile wake the loop, not extend it.
        end = None if timeout is None else time.monotonic() + timeout
        while feed.writing_paused and not feed.lost:
            try:
                await _wait(feed, "writer", None if end is None else end - time.monotonic())
            except TimeoutError:
                raise httpcore.WriteTimeout(
                    "the server did not take the request within the write timeout"
                ) from None
        if feed.lost:
            # Lost while the transport still held some of the buffer: not all of it left.
            why = "the connection closed" if feed.error is None else f"the connection broke: {feed.error!r}"
            raise httpcore.WriteError(why)

    async def aclose(self) -> None:
        if self._loop_gone():
            # The transport belongs to a loop that is closed (or not ours): it can no longer be aborted
            # there. Ending the TCP connection is what is left; the socket is freed with its transport.
            with contextlib.suppress(OSError):
                sock = self._transport.get_extra_info("socket")
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
            return
        # Abort, not close: close() would keep sending what is buffered (a request cut at its deadline)
        # for as long as the server takes it, and over TLS wait up to 30 s for the server's close_notify.
        self._transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport = await loop.start_tls(
                    self._transport, self._feed, ssl_context, server_hostname=server_hostname
                )
        except TimeoutError:
            self._transport.close()
            raise httpcore.ConnectTimeout("the TLS handshake took longer than the connect timeout") from None
        except (OSError, ssl.SSLError) as exc:
            self._transport.close()
            raise httpcore.ConnectError(f"the TLS handshake failed: {exc!r}") from exc
        if transport is None:
            raise httpcore.ConnectError("the connection closed during the TLS handshake")
        assert isinstance(transport, asyncio.Transport)
        self._feed.transport = transport
        return NativeStream(transport, self._feed)

    def get_extra_info(self, info: str) -> Any:
        transport = self._transport
        if info == "ssl_object":
            return transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return transport.get_extra_info("sockname")
        if info == "server_addr":
            return transport.get_extra_info("peername")
        if info == "socket":
            return transport.get_extra_info("socket")
        if info == "is_readable":
            if self._loop_gone():
                # Kept alive under an event loop that has ended: its answers would never be read. Readable
                # says "no longer usable", so the pool drops the connection instead of sending on it.
                return True
            # Bytes or an end already taken from the socket count, as well as what waits in it.
            feed = self._feed
            return bool(feed.chunks) or feed.eof or socket_readable(transport.get_extra_info("socket"))
        return None


def socket_readable(sock: socket.socket | None) -> bool:
    """Whether a read would not block (data, or the server's close); a missing socket counts as closed."""
    fd = -1 if sock is None else sock.fileno()
    if fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class NativeBackend(httpcore.AsyncNetworkBackend):
    """``NativeStream`` connections under asyncio; ``fallback`` (httpcore's choice) under anything else."""

    def __init__(self, fallback: httpcore.AsyncNetworkBackend) -> None:
        self._fallback = fallback

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if sniffio.current_async_library() != "asyncio":
            return await self._fallback.connect_tcp(host, port, timeout, local_address, socket_options)
        loop = asyncio.get_running_loop()
        local = None if local_address is None else (local_address, 0)
        connecting = loop.create_connection(_Feed, host, port, local_addr=local)
        return await _connect(connecting, timeout, socket_options)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if sniffio.current_async_library() != "asyncio":
            return await self._fallback.connect_unix_socket(path, timeout, socket_options)
        loop = asyncio.get_running_loop()
        return await _connect(loop.create_unix_connection(_Feed, path), timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._fallback.sleep(seconds)


async def _connect(
    connecting: Any, timeout: float | None, socket_options: Iterable[httpcore.SOCKET_OPTION] | None
) -> NativeStream:
    """The stream of ``connecting`` (a loop's create_connection), with the caller's socket options set."""
    try:
        async with asyncio.timeout(timeout):
            transport, feed = await connecting
    except TimeoutError:
        raise httpcore.ConnectTimeout("no connection within the connect timeout") from None
    except OSError as exc:
        raise httpcore.ConnectError(f"the connection failed: {exc!r}") from exc
    try:
        for option in socket_options or ():
            transport.get_extra_info("socket").setsockopt(*option)
    except OSError as exc:
        transport.close()
        raise httpcore.ConnectError(f"a socket option was refused: {exc!r}") from exc
    return NativeStream(transport, feed)
