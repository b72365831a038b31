"""A hostile review of the async clients' streams on asyncio's own transports (``_aiostream``).

Each test pins a behaviour of the streams and the clients over them: closing ends a connection at
once, a write's timeout holds while the server talks, a TLS close logs nothing, and the cases that
no other test covered (TLS handshakes that fail or hang, endless bodies, retries around the first
attempt).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpcore
import httpx
import psutil
import pytest
from hostile.server import Answer, HostileServer

from billing_events import AsyncLago, AsyncTogai, RetryPolicy
from billing_events._aiostream import NativeBackend, NativeStream
from billing_events.retry import RetryPolicy as _Policy

from .scripted import Scripted, accepted, lago_event, togai_event
from .test_native_streams import _certificates, _pending_timers, _until, _write_much

TOKEN = "native-hostile-token-0123456789abcdef"
# How long a test waits for something that happens at once on loopback (a bound, never a sleep).
PATIENCE = 10.0

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _connect(port: int, backend: httpcore.AsyncNetworkBackend | None = None) -> Any:
    backend = backend or NativeBackend(httpcore.AnyIOBackend())
    return await backend.connect_tcp("127.0.0.1", port, timeout=PATIENCE)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(CA file, certificate, key) for localhost and 127.0.0.1."""
    return _certificates(tmp_path_factory.mktemp("hostile-tls"))


def _server_context(certificates: tuple[Path, Path, Path]) -> ssl.SSLContext:
    _, cert, key = certificates
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def _client_context(certificates: tuple[Path, Path, Path]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certificates[0]))


class MuteTLSServer:
    """A TLS server in a thread for one connection: it completes the handshake, reads one record of the
    request (``read_first``), and then neither reads nor writes until the test ends (a hung backend behind
    a TLS terminator)."""

    def __init__(self, certificates: tuple[Path, Path, Path], read_first: bool = True) -> None:
        self._context = _server_context(certificates)
        self._read_first = read_first
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen()
        self._listener.settimeout(PATIENCE)  # a bound on the accept, should the client never come
        self.port = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        # One connection: each test here makes exactly one.
        try:
            raw, _ = self._listener.accept()
        except OSError:
            return
        try:
            tls = self._context.wrap_socket(raw, server_side=True)
            if self._read_first:
                tls.recv(65536)
            self._held.append(tls)
        except OSError:
            raw.close()

    def close(self) -> None:
        self._thread.join(PATIENCE)
        self._listener.close()
        for held in self._held:
            held.close()


def _established_to(port: int) -> list[Any]:
    """This process's TCP connections to ``port`` on loopback that are still established."""
    return [
        conn
        for conn in psutil.Process().net_connections("tcp")
        if conn.raddr and conn.raddr.port == port and conn.status == psutil.CONN_ESTABLISHED
    ]


# -- Closing a stream ends its connection ------------------------------------------------------


def test_closing_a_stream_whose_server_reads_nothing_ends_its_connection() -> None:
    async def run() -> None:
        done = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await done.wait()  # reads nothing: the client's writes back up

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            stream = await _connect(port)
            with pytest.raises(httpcore.WriteTimeout):
                await _write_much(stream, 0.2)
            await stream.aclose()
            # anyio's stream aborts its transport on close: the connection is gone at once.
            await _until(lambda: stream._feed.lost, "the closed stream's connection is still open")
        finally:
            done.set()
            server.close()

    asyncio.run(run())


def test_closing_a_tls_stream_whose_server_is_mute_ends_its_connection_and_leaves_no_timer(
    certificates: tuple[Path, Path, Path],
) -> None:
    server = MuteTLSServer(certificates, read_first=False)

    async def run() -> None:
        stream = await _connect(server.port)
        tls = await stream.start_tls(_client_context(certificates), "localhost", timeout=PATIENCE)
        assert isinstance(tls, NativeStream)
        await tls.aclose()
        await _until(lambda: tls._feed.lost, "the closed TLS stream's connection is still open")
        assert _pending_timers() == []

    try:
        asyncio.run(run())
    finally:
        server.close()


def test_an_attempt_cut_at_its_deadline_over_tls_leaves_no_connection_open(
    certificates: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates[0]))
    server = MuteTLSServer(certificates)

    async def run() -> list[str]:
        async with AsyncTogai(
            TOKEN,
            base_url=f"https://localhost:{server.port}",
            timeout=1.0,
            retry=RetryPolicy(max_attempts=1, deadline=5.0),
        ) as client:
            report = await client.send([togai_event(1)])
        # The attempt is over and the client closed: nothing of it may hold a socket any more.
        await _until(
            lambda: not _established_to(server.port),
            "the cut attempt's TLS connection is still established after the client closed",
        )
        return [outcome.status.value for outcome in report]

    try:
        started = time.monotonic()
        statuses = asyncio.run(run())
        assert time.monotonic() - started < 2 * PATIENCE
    finally:
        server.close()
    assert statuses == ["unknown"]  # the request left: the provider may have it


# -- Write timeouts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backend",
    [None, httpcore.AnyIOBackend()],
    ids=["native", "anyio"],  # anyio's: the reference, httpcore's own stream ends that write by its timeout
)
def test_a_write_times_out_even_while_the_server_keeps_talking(
    backend: httpcore.AsyncNetworkBackend | None,
) -> None:
    async def run() -> None:
        done = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # Reads nothing, but says something every 50 ms (an early answer trickled, say).
            while not done.is_set():
                writer.write(b".")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), 0.05)

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            stream = await _connect(port, backend)
            try:
                async with asyncio.timeout(PATIENCE / 2):
                    with pytest.raises(httpcore.WriteTimeout):
                        await _write_much(stream, 0.3)
            except TimeoutError:
                pytest.fail("a write with a 0.3 s timeout was still blocked after 5 s")
            finally:
                await stream.aclose()
        finally:
            done.set()
            server.close()

    asyncio.run(run())


def test_a_cancelled_write_leaves_no_waiter_or_timer_behind() -> None:
    async def run() -> None:
        done = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await done.wait()

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            stream = await _connect(port)

            task = asyncio.create_task(_write_much(stream, PATIENCE))
            await _until(lambda: stream._feed.writer is not None)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert stream._feed.writer is None
            assert _pending_timers() == []
            await stream.aclose()
        finally:
            done.set()
            server.close()

    asyncio.run(run())


# -- TLS ---------------------------------------------------------------------------------------


def test_a_tls_server_closing_its_connection_logs_no_warning(
    certificates: tuple[Path, Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    async def run() -> bytes:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()  # as a server does when its keep-alive timeout ends: close_notify, then FIN

        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=_server_context(certificates))
        port = server.sockets[0].getsockname()[1]
        try:
            stream = await _connect(port)
            tls = await stream.start_tls(_client_context(certificates), "localhost", timeout=PATIENCE)
            received = b""
            while chunk := await tls.read(1024, timeout=PATIENCE):
                received += chunk
            await tls.aclose()
            return received
        finally:
            server.close()

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        received = asyncio.run(run())
    assert received.startswith(b"HTTP/1.1 200")
    warnings = [
        r.getMessage() for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.WARNING
    ]
    assert warnings == []


def test_a_tls_handshake_the_server_never_answers_ends_failed_by_the_connect_timeout(
    certificates: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates[0]))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepted by the kernel, never answered: the ClientHello waits forever
    port = listener.getsockname()[1]

    async def run() -> list[tuple[str, str]]:
        async with AsyncLago(
            TOKEN,
            base_url=f"https://localhost:{port}/api/v1",
            timeout=1.0,
            retry=RetryPolicy(max_attempts=2, deadline=4.0, initial_delay=0.01, max_delay=0.01),
        ) as client:
            report = await client.send([lago_event(1)])
        return [(o.status.value, o.reason or "") for o in report]

    try:
        started = time.monotonic()
        [(status, reason)] = asyncio.run(run())
        assert time.monotonic() - started < PATIENCE
    finally:
        listener.close()
    assert status == "failed"  # no byte of the request left
    assert TOKEN not in reason


def test_a_server_that_drops_the_tls_handshake_ends_failed(
    certificates: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates[0]))

    async def run() -> list[str]:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)  # the ClientHello's first byte, then hang up
            writer.close()

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            async with AsyncTogai(
                TOKEN,
                base_url=f"https://localhost:{port}",
                timeout=5.0,
                retry=RetryPolicy(max_attempts=2, deadline=8.0, initial_delay=0.01, max_delay=0.01),
            ) as client:
                report = await client.send([togai_event(1), togai_event(2)])
        finally:
            server.close()
        return [o.status.value for o in report]

    assert asyncio.run(run()) == ["failed", "failed"]


def test_a_body_trickled_over_tls_is_cut_at_the_attempt_deadline(
    certificates: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificates[0]))

    async def run() -> list[str]:
        done = asyncio.Event()

        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
            )
            try:
                while not done.is_set():  # a byte every 50 ms: each read makes progress, the whole never ends
                    writer.write(b" ")
                    await writer.drain()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(done.wait(), 0.05)
            except OSError:
                pass  # the client hung up, as it should at its deadline

        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=_server_context(certificates))
        port = server.sockets[0].getsockname()[1]
        try:
            async with AsyncTogai(
                TOKEN,
                base_url=f"https://localhost:{port}",
                timeout=1.0,
                retry=RetryPolicy(max_attempts=2, deadline=3.0, initial_delay=0.01, max_delay=0.01),
            ) as client:
                report = await client.send([togai_event(1)])
        finally:
            done.set()
            server.close()
        return [o.status.value for o in report]

    started = time.monotonic()
    assert asyncio.run(run()) == ["unknown"]
    assert time.monotonic() - started < PATIENCE


# -- Answers over the native streams -------------------------------------------------------------


def test_an_endless_chunked_answer_is_capped_by_the_async_client(hostile: HostileServer) -> None:
    hostile.answer(Answer("endless", status=200, size=1024 * 1024 * 1024))

    async def run() -> list[tuple[str, str]]:
        async with AsyncLago(
            TOKEN,
            base_url=hostile.url,
            timeout=30.0,
            retry=RetryPolicy(max_attempts=2, deadline=30.0, initial_delay=0.01, max_delay=0.01),
        ) as client:
            report = await client.send([lago_event(1, transaction_id="endless-1")])
        return [(o.status.value, o.reason or "") for o in report]

    [(status, reason)] = asyncio.run(run())
    assert status == "unknown"  # the server stored it, yet its answer was no answer
    assert "larger than" in reason


def test_many_requests_in_flight_over_one_client_each_end_once(hostile: HostileServer) -> None:
    # Every other answer is a 503 (retried), the rest succeed: 64 sends with 16 lanes each.
    hostile.answer(Answer("error", status=503), Answer("ok"))

    async def run() -> list[str]:
        async with AsyncTogai(
            TOKEN,
            base_url=hostile.url,
            timeout=10.0,
            max_in_flight=16,
            retry=RetryPolicy(max_attempts=3, deadline=30.0, initial_delay=0.01, max_delay=0.01),
        ) as client:
            reports = await asyncio.gather(*(client.send([togai_event(i, id=f"m-{i}")]) for i in range(64)))
        return [o.status.value for report in reports for o in report]

    assert asyncio.run(run()) == ["delivered"] * 64  # the one 503 was retried


# -- The retry loop built after the first attempt ----------------------------------------------


def _recorded_backoffs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, float | None]]:
    calls: list[tuple[int, float | None]] = []
    backoff = _Policy.backoff

    def recorded(self: _Policy, attempt_number: int, retry_after: float | None) -> float:
        calls.append((attempt_number, retry_after))
        return backoff(self, attempt_number, retry_after)

    monkeypatch.setattr(_Policy, "backoff", recorded)
    return calls


def _send_one(server: Scripted, retry: RetryPolicy) -> Any:
    """One Togai event through an asyncio client on ``server``'s transport; the call's report."""

    async def run() -> Any:
        async with AsyncTogai(
            TOKEN, base_url="http://togai.local", transport=server.transport(), retry=retry
        ) as client:
            return await client.send([togai_event(1)])

    return asyncio.run(run())


def test_async_retries_count_the_first_attempt_and_honour_its_retry_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _recorded_backoffs(monkeypatch)
    server = Scripted(
        httpx.Response(429, json={"message": "slow"}, headers={"Retry-After": "0.05"}),
        httpx.Response(503, json={"message": "down"}, headers={"Retry-After": "0.02"}),
        default=accepted,
    )

    report = _send_one(
        server, RetryPolicy(max_attempts=3, deadline=20.0, initial_delay=0.001, max_delay=0.001)
    )
    assert [o.status.value for o in report] == ["delivered"]
    assert len(server.requests) == 3
    assert calls == [(1, 0.05), (2, 0.02)]  # the first attempt's hint drove the first wait


def test_async_retries_stop_at_the_attempt_cap_counting_the_first_attempt() -> None:
    server = Scripted(default=httpx.Response(503, json={"message": "down"}, headers={"Retry-After": "0"}))

    report = _send_one(
        server, RetryPolicy(max_attempts=3, deadline=20.0, initial_delay=0.001, max_delay=0.001)
    )
    assert [(o.status.value, o.attempts) for o in report] == [("unknown", 3)]
    assert len(server.requests) == 3


def test_async_retries_make_no_wait_that_crosses_the_call_deadline() -> None:
    server = Scripted(default=httpx.Response(503, json={"message": "down"}, headers={"Retry-After": "5"}))

    started = time.monotonic()
    report = _send_one(
        server, RetryPolicy(max_attempts=100, deadline=0.5, initial_delay=0.001, max_retry_after=5)
    )
    assert [o.status.value for o in report] == ["unknown"]
    assert len(server.requests) == 1
    assert time.monotonic() - started < PATIENCE  # no 5 s sleep started past the deadline
