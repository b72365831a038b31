"""A hostile HTTP server on loopback: scripted answers that real networks and proxies give.

Plain sockets in a thread (not the mock's ASGI stack) because the answers break HTTP on
purpose: trickled bytes, endless chunked bodies, bodies that lie about their encoding.
"""

from __future__ import annotations

import contextlib
import json
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs

HTML_5XX = b"<html><head><title>%d</title></head><body><h1>Bad gateway</h1><p>cloud proxy</p></body></html>"
CHUNK = 64 * 1024


@attrs.define
class Answer:
    """One scripted answer.

    kind: ok, ok_then_close, trickle, slow_head, endless, huge, html, error, bad_encoding, gzipped,
    redirect, echo_token, early, reset_mid_body. ``ok_then_close`` answers like ``ok`` (keep-alive) and
    then closes the connection, as a server does when its idle timeout is shorter than the client's.
    ``early`` answers ``status`` with ``body`` before reading the request's body, then closes (a proxy
    refusing a request by its headers). ``reset_mid_body`` reads half the body, then resets the connection.
    ``store`` says whether the server keeps the request's events before answering.
    """

    kind: str = "ok"
    status: int = 200
    store: bool = True
    interval: float = 0.5  # trickle, slow_head: seconds between two bytes
    patience: float = 60.0  # slow_head: after this long, set ``outlasted`` and send the rest at once
    size: int = 400 * 1024 * 1024  # huge: bytes of the error page; endless: safety stop
    location: str = ""
    body: bytes = b""


class HostileServer:
    """Answers each request with the next scripted ``Answer`` (the last one repeats)."""

    def __init__(self) -> None:
        self.script: list[Answer] = [Answer()]
        self.stored: list[str] = []  # keys of the events stored, in order, duplicates included
        self.requests = 0
        self.connections = 0  # connections accepted
        self.arrived = threading.Semaphore(0)  # released as each request has been read
        self.authorizations: list[str] = []
        # Set when a client still listened to a slow_head answer after its ``patience``.
        self.outlasted = threading.Event()
        # Released each time an ok_then_close answer has shut its connection (the FIN is on its way).
        self.hung_up = threading.Semaphore(0)
        self._lock = threading.Lock()
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                server._serve(self)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self._server.daemon_threads = True
        self._server.allow_reuse_address = True
        self._server.server_bind()
        self._server.server_activate()
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def stored_count(self) -> int:
        with self._lock:
            return len(self.stored)

    def answer(self, *answers: Answer) -> None:
        self.script = list(answers)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # -- one connection ---------------------------------------------------

    def _serve(self, handler: socketserver.StreamRequestHandler) -> None:
        with self._lock:
            self.connections += 1
        try:
            while self._serve_one(handler):
                pass
        except (ConnectionError, OSError):
            pass  # the client hung up: exactly what a bounded client does

    def _serve_one(self, handler: socketserver.StreamRequestHandler) -> bool:
        line = handler.rfile.readline(65537)
        if not line:
            return False
        headers: dict[str, str] = {}
        while True:
            raw = handler.rfile.readline(65537)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        with self._lock:
            upcoming = self.script[min(self.requests, len(self.script) - 1)]
        length = int(headers.get("content-length", "0") or 0)
        if upcoming.kind in ("early", "reset_mid_body"):
            with self._lock:
                self.requests += 1
                self.authorizations.append(headers.get("authorization", ""))
            if upcoming.kind == "early":
                self._send(
                    handler.wfile, upcoming.status, upcoming.body, "application/json", Connection="close"
                )
                handler.wfile.flush()
            else:
                handler.rfile.read(length // 2)
                # SO_LINGER 0: close() sends a reset, not a FIN.
                handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        body = handler.rfile.read(length)
        headers[":body"] = body.decode("utf-8", "replace")  # for the answers that echo the request
        with self._lock:
            answer = self.script[min(self.requests, len(self.script) - 1)]
            self.requests += 1
            self.authorizations.append(headers.get("authorization", ""))
        self.arrived.release()
        if answer.store and line.startswith(b"POST"):
            self._store(body)
        out = handler.wfile
        getattr(self, f"_{answer.kind}")(out, answer, headers)
        out.flush()
        if answer.kind == "ok_then_close":
            handler.connection.shutdown(socket.SHUT_WR)
            self.hung_up.release()
        return answer.kind not in ("trickle", "slow_head", "endless", "huge", "ok_then_close")

    def _store(self, body: bytes) -> None:
        try:
            events = json.loads(body).get("events", [])
        except (ValueError, AttributeError):
            return
        keys = [str(e.get("id") or e.get("transaction_id")) for e in events if isinstance(e, dict)]
        with self._lock:
            self.stored.extend(keys)

    # -- the answers ------------------------------------------------------

    @staticmethod
    def _head(out: Any, status: int, headers: dict[str, str], reason: str = "") -> None:
        lines = [f"HTTP/1.1 {status} {reason or f'Status{status}'}"] + [
            f"{k}: {v}" for k, v in headers.items()
        ]
        out.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def _send(
        self, out: Any, status: int, body: bytes, content_type: str, reason: str = "", **extra: str
    ) -> None:
        headers = {"Content-Type": content_type, "Content-Length": str(len(body)), **extra}
        self._head(out, status, headers, reason)
        out.write(body)

    def _ok(self, out: Any, answer: Answer, headers: dict[str, str]) -> None:
        self._send(out, answer.status, answer.body or _success(headers[":body"]), "application/json")

    _ok_then_close = _ok

    def _trickle(self, out: Any, answer: Answer, _: dict[str, str]) -> None:
        body = answer.body or b'{"message":"' + b"ok" * 100 + b'"}'
        self._head(out, answer.status, {"Content-Type": "application/json", "Content-Length": str(len(body))})
        out.flush()
        for index in range(len(body)):
            out.write(body[index : index + 1])
            out.flush()
            time.sleep(answer.interval)

    def _slow_head(self, out: Any, answer: Answer, headers: dict[str, str]) -> None:
        """The status line and headers one byte at a time, then a valid body at once."""
        body = answer.body or _success(headers[":body"])
        head = (
            f"HTTP/1.1 {answer.status} Status{answer.status}\r\nContent-Type: application/json\r\n"
            f"X-Padding: {'x' * 200}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        started = time.monotonic()
        for index in range(len(head)):
            if time.monotonic() - started > answer.patience:
                self.outlasted.set()
                out.write(head[index:])
                break
            out.write(head[index : index + 1])
            out.flush()
            time.sleep(answer.interval)
        out.write(body)

    def _endless(self, out: Any, answer: Answer, _: dict[str, str]) -> None:
        self._head(out, answer.status, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        chunk = f"{CHUNK:x}\r\n".encode() + b" " * CHUNK + b"\r\n"
        for _ in range(answer.size // CHUNK):
            out.write(chunk)
        out.write(b"0\r\n\r\n")

    def _huge(self, out: Any, answer: Answer, _: dict[str, str]) -> None:
        self._head(out, answer.status, {"Content-Type": "text/html", "Content-Length": str(answer.size)})
        for block in _blocks(answer.size):
            out.write(block)

    def _html(self, out: Any, answer: Answer, _: dict[str, str]) -> None:
        self._send(out, answer.status, answer.body or HTML_5XX % answer.status, "text/html")

    def _error(self, out: Any, answer: Answer, _: dict[str, str]) -> None:
        self._send(out, answer.status, answer.body or b'{"message":"scripted error"}', "application/json")

    def _bad_encoding(self, out: Any, answer: Answer, _: dict[str, str]) -> None:
        self._send(
            out,
            answer.status,
            b'{"message":"not gzip at all"}',
            "application/json",
            **{"Content-Encoding": "gzip"},
        )

    def _gzipped(self, out: Any, answer: Answer, _: dict[str, str]) -> None:
        self._send(out, answer.status, answer.body, "application/json", **{"Content-Encoding": "gzip"})

    def _redirect(self, out: Any, answer: Answer, _: dict[str, str]) -> None:
        self._send(out, answer.status, b"moved", "text/plain", Location=answer.location)

    def _echo_token(self, out: Any, answer: Answer, headers: dict[str, str]) -> None:
        said = headers.get("authorization", "")
        body = json.dumps({"message": f"invalid credentials: {said}", "error": said}).encode()
        self._send(out, answer.status, body, "application/json", f"Refused {said}", **{"X-Debug-Auth": said})


def _success(request_body: str) -> bytes:
    """A provider's success body: Lago echoes the events it stored, Togai says so in a message."""
    try:
        events = json.loads(request_body).get("events", [])
    except (ValueError, AttributeError):
        events = []
    if events and isinstance(events[0], dict) and "transaction_id" in events[0]:
        stored = [{"lago_id": f"lago-{index}", **event} for index, event in enumerate(events)]
        return json.dumps({"events": stored}).encode()
    return b'{"message":"ok"}'


def _blocks(size: int) -> Iterator[bytes]:
    block = b"<p>" + b"x" * (CHUNK - 7) + b"</p>"
    for _ in range(size // CHUNK):
        yield block
    yield b"x" * (size % CHUNK)


class _EchoHead(socketserver.StreamRequestHandler):
    """Answers every request with ``head(authorization)`` (a head h11 refuses, say), then an empty JSON body."""

    head: Callable[[bytes], bytes]

    def handle(self) -> None:
        length, authorization = 0, b""
        while (line := self.rfile.readline(65537)) not in (b"\r\n", b"\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"authorization":
                authorization = value.strip()
        self.rfile.read(length)
        self.wfile.write(self.head(authorization) + b"Content-Length: 2\r\n\r\n{}")


@contextlib.contextmanager
def echo_head_server(head: Callable[[bytes], bytes]) -> Iterator[str]:
    """A server on loopback whose answers' heads echo the request's Authorization value; its URL."""
    handler = type("Handler", (_EchoHead,), {"head": staticmethod(head)})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
