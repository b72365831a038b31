"""The async clients' streams on asyncio's own transports (``billing_events._aiostream``).

Each test runs a real server on loopback: asyncio's own for the stream's edge cases, the mock
under uvicorn with TLS for the clients end to end.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import struct
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpcore
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from billing_events import AsyncLago, AsyncTogai, OutcomeStatus, RetryPolicy
from billing_events._aiostream import READ_HIGH_WATER, NativeBackend, NativeStream
from billing_events.mock.testing import mock_app, serve_in_thread

from .scripted import lago_event, togai_event

TOKEN = "native-stream-token-0123456789"
# How long a test waits for something that happens at once on loopback.
PATIENCE = 10.0

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _connected(handler: Handler, body: Callable[[NativeStream], Awaitable[None]]) -> None:
    """Serve ``handler`` on loopback, connect one native stream to it, and run ``body`` with it."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        stream = await NativeBackend(httpcore.AnyIOBackend()).connect_tcp("127.0.0.1", port, timeout=PATIENCE)
        assert isinstance(stream, NativeStream)
        try:
            await body(stream)
        finally:
            await stream.aclose()
    finally:
        server.close()


async def _until(condition: Callable[[], bool], why: str = "the condition never held") -> None:
    """Let the loop run until ``condition`` holds; fail with ``why`` after PATIENCE seconds."""
    try:
        async with asyncio.timeout(PATIENCE):
            # The conditions are the protocol's own state, which has no event to wait on.
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.001)
    except TimeoutError:
        pytest.fail(f"{why} (after {PATIENCE:g} s)")


async def _write_much(stream: httpcore.AsyncNetworkStream, timeout: float | None) -> None:
    """Far more than both sockets' buffers hold, a MiB a write."""
    piece = b"x" * (1024 * 1024)
    for _ in range(256):
        await stream.write(piece, timeout=timeout)


def _pending_timers() -> list[asyncio.TimerHandle]:
    """The running loop's timers that are still due to fire."""
    loop = asyncio.get_running_loop()
    return [handle for handle in loop._scheduled if not handle.cancelled()]  # type: ignore[attr-defined]


def test_reads_give_at_most_what_was_asked_then_the_end() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"abcdefgh")
        await writer.drain()
        writer.close()

    async def body(stream: NativeStream) -> None:
        received = b""
        while True:
            chunk = await stream.read(3, timeout=PATIENCE)
            if not chunk:
                break
            assert len(chunk) <= 3
            received += chunk
        assert received == b"abcdefgh"
        assert await stream.read(3, timeout=PATIENCE) == b""  # the end stays the end

    asyncio.run(_connected(handler, body))


def test_a_silent_server_makes_a_read_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)  # until the client leaves

    async def body(stream: NativeStream) -> None:
        with pytest.raises(httpcore.ReadTimeout):
            await stream.read(1024, timeout=0.05)

    asyncio.run(_connected(handler, body))


def test_a_reset_connection_makes_a_read_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        # Linger 0: close() sends a reset, not an orderly end.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def read_all(stream: NativeStream) -> None:
        while await stream.read(1024, timeout=PATIENCE):
            pass

    async def body(stream: NativeStream) -> None:
        with pytest.raises(httpcore.ReadError, match="broke"):
            await read_all(stream)

    asyncio.run(_connected(handler, body))


def test_a_server_that_does_not_read_makes_a_write_timeout() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(PATIENCE)  # reads nothing; the client's writes back up

    async def body(stream: NativeStream) -> None:
        with pytest.raises(httpcore.WriteTimeout):
            await _write_much(stream, 0.2)

    asyncio.run(_connected(handler, body))


def test_what_the_socket_gives_is_kept_only_up_to_the_high_water_mark() -> None:
    total = 8 * READ_HIGH_WATER

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"y" * total)
        await writer.drain()
        writer.close()

    async def body(stream: NativeStream) -> None:
        feed = stream._feed
        # The client reads nothing: the transport stops taking bytes from the socket.
        await _until(lambda: feed.reading_paused)
        assert feed.size <= READ_HIGH_WATER + 256 * 1024  # the mark, and at most one more socket read
        received = 0
        while chunk := await stream.read(64 * 1024, timeout=PATIENCE):
            received += len(chunk)
            assert feed.size <= READ_HIGH_WATER + 256 * 1024
        assert received == total  # reading resumed each time it went below the mark

    asyncio.run(_connected(handler, body))


def test_an_idle_connection_the_server_closed_reads_as_readable() -> None:
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()
        closed.set()

    async def body(stream: NativeStream) -> None:
        await closed.wait()
        # The loop may take the end from the socket before anyone asks: it counts either way.
        await _until(lambda: bool(stream.get_extra_info("is_readable")))
        assert await stream.read(16, timeout=PATIENCE) == b""

    asyncio.run(_connected(handler, body))


def test_a_cancelled_read_leaves_no_timer_behind() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)

    async def body(stream: NativeStream) -> None:
        task = asyncio.create_task(stream.read(16, timeout=PATIENCE))
        await _until(lambda: stream._feed.reader is not None)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert stream._feed.reader is None
        assert _pending_timers() == []

    asyncio.run(_connected(handler, body))


# -- TLS, end to end through the clients ------------------------------------------------------


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for localhost and 127.0.0.1: (CA file, certificate, key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "billing-events test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_file, cert_file, key_file


@pytest.fixture(scope="module")
def tls_mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The mock over HTTPS on loopback: (its origin, the CA file that signed its certificate)."""
    ca_file, cert_file, key_file = _certificates(tmp_path_factory.mktemp("tls"))
    app = mock_app(token=TOKEN)
    with serve_in_thread(app, ssl_certfile=str(cert_file), ssl_keyfile=str(key_file)) as origin:
        yield origin.replace("http://", "https://"), ca_file


def test_the_async_clients_deliver_over_tls(
    tls_mock: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    origin, ca_file = tls_mock
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))

    async def run() -> tuple[list[OutcomeStatus], list[OutcomeStatus]]:
        lago_events = [lago_event(n, transaction_id=f"tls-{n}") for n in range(250)]
        togai_events = [togai_event(n, id=f"tls-{n}") for n in range(30)]
        async with AsyncLago(TOKEN, base_url=f"{origin}/lago/api/v1", max_in_flight=4) as lago:
            lago_report = await lago.send(lago_events)
        async with AsyncTogai(TOKEN, base_url=f"{origin}/togai", max_in_flight=4) as togai:
            togai_report = await togai.send(togai_events)
        return [o.status for o in lago_report.outcomes], [o.status for o in togai_report.outcomes]

    lago, togai = asyncio.run(run())
    assert lago == [OutcomeStatus.DELIVERED] * 250
    assert togai == [OutcomeStatus.DELIVERED] * 30


def test_a_certificate_nobody_vouches_for_sends_nothing(tls_mock: tuple[str, Path]) -> None:
    origin, _ = tls_mock  # SSL_CERT_FILE unset: the system's CAs, which never signed it

    async def run() -> list[tuple[OutcomeStatus, str]]:
        async with AsyncLago(
            TOKEN, base_url=f"{origin}/lago/api/v1", retry=RetryPolicy(max_attempts=1)
        ) as lago:
            report = await lago.send([lago_event(1)])
        return [(o.status, o.reason or "") for o in report.outcomes]

    [(status, reason)] = asyncio.run(run())
    assert status is OutcomeStatus.FAILED  # the handshake failed: no byte of the request left
    assert "certificate" in reason.lower() or "ssl" in reason.lower()
