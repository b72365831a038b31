"""Transports that bound every answer: a wall-clock deadline, a size cap, and no echoed token.

httpx's timeouts bound each read, not the request: a server that sends one byte
every half second never trips them. These wrappers sit around the real transport
(sync and async), so every request of a client goes through them:

- the attempt ends at ``min(now + attempt_seconds, call deadline)``; the call
  deadline travels with the request (``extensions[CALL_DEADLINE]``, or the
  ``call_deadline`` context for the generated request-response operations); the
  default sync transport's sockets also end each operation by then (``_network``), so
  a status line or header sent one byte at a time is cut too (async: the whole attempt is cancelled);
- the body is capped at ``extensions[ANSWER_CAP]`` (default: the transport's)
  for a 2xx, at ``extensions[ERROR_CAP]`` (default ``MAX_ERROR_ANSWER_BYTES``) otherwise,
  before and after decoding;
- gzip/deflate are decoded here, under the cap (a small gzip can inflate to gigabytes);
- the request's token is replaced by ``***`` in the answer's headers and body,
  so no server echo can carry it into a reason, a log or a file; in the body also
  when JSON-escaped (a slash or an ampersand escaped), which parsing would turn back into the token.

Both errors are ``httpx.TransportError`` subclasses: the request may have reached
the server, so delivery retries it and never counts it as surely failed.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import functools
import http.cookiejar
import json
import logging
import re
import threading
import time
import urllib.parse
import urllib.request
import zlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import anyio
import httpx

from . import _constants as C
from ._network import (
    Progress,
    async_http_transport,
    bounded_http_transport,
    reset_attempt_deadline,
    reset_progress,
    set_attempt_deadline,
    set_progress,
)

CALL_DEADLINE = "billing_events.call_deadline"  # absolute time.monotonic() at which the whole call ends
PROGRESS = "billing_events.progress"  # a Progress the default transports mark as the request goes out
ANSWER_CAP = "billing_events.max_answer_bytes"  # the largest 2xx body this request can legitimately get
ERROR_CAP = "billing_events.max_error_bytes"  # the largest other body (default MAX_ERROR_ANSWER_BYTES)
# A threading.Event that, once set, ends the request's wait for its rate budget: a thread sender's close deadline.
STOP = "billing_events.stop"

_call_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("call_deadline", default=None)
REDACTED = b"***"
# Shorter "tokens" would garble ordinary text; real API keys are far longer.
MIN_SECRET_LENGTH = 8


class AttemptTimeout(httpx.TimeoutException):
    """The whole answer did not arrive within the attempt's wall-clock bound."""


class ConnectDeadline(httpx.ConnectTimeout):
    """The attempt's time ran out while its connection was being made: no byte of the request left."""


class NoTimeLeft(httpx.ConnectTimeout):
    """The call's deadline passed before this attempt could start: nothing was sent."""


class AnswerTooLarge(httpx.RemoteProtocolError):
    """The answer is larger than any legitimate answer to this request."""


class BadAnswerEncoding(httpx.RemoteProtocolError):
    """The answer claims a content encoding its body does not have."""


class NoCookies(http.cookiejar.CookieJar):
    """A cookie jar that keeps nothing: the providers' APIs use no cookies.

    httpx hands every answer to its client's jar, which parses the headers again;
    this jar skips that, and no cookie from a server rides along on a later request.
    """

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


@contextlib.contextmanager
def call_deadline(deadline: float | None) -> Iterator[None]:
    """Requests made inside end by ``deadline`` (``time.monotonic()``) at the latest."""
    token = _call_deadline.set(deadline)
    try:
        yield
    finally:
        _call_deadline.reset(token)


def deadline_of(request: httpx.Request) -> float | None:
    """The deadline of the call a request belongs to (``time.monotonic()``), if it has one."""
    call = request.extensions.get(CALL_DEADLINE, _call_deadline.get())
    return float(call) if isinstance(call, int | float) else None


def request_bounds(
    deadline: float | None,
    answer_cap: int,
    progress: Progress | None = None,
    error_cap: int | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """The request extensions that carry a call's deadline, its answer caps, where its progress is marked
    and what stops its wait for the rate budget."""
    return {
        CALL_DEADLINE: deadline,
        ANSWER_CAP: answer_cap,
        ERROR_CAP: error_cap or C.MAX_ERROR_ANSWER_BYTES,
        PROGRESS: progress,
        STOP: stop,
    }


def stop_of(request: httpx.Request) -> threading.Event | None:
    """What ends this request's wait for its rate budget (``STOP``), if anything does."""
    stop = request.extensions.get(STOP)
    return stop if isinstance(stop, threading.Event) else None


def _entered(request: httpx.Request, watched: bool) -> Progress:
    """The request's Progress, marked as taken by the transport (past the pacer's wait)."""
    progress = request.extensions.get(PROGRESS)
    if not isinstance(progress, Progress):
        progress = Progress()
    progress.enter(watched)
    return progress


class _Bound:
    """What one request may take: its deadline, its answer cap and the secrets to scrub."""

    def __init__(self, request: httpx.Request, attempt_seconds: float, answer_cap: int) -> None:
        now = time.monotonic()
        deadline = now + attempt_seconds
        call = deadline_of(request)
        if call is not None:
            deadline = min(deadline, call)
        self.deadline = deadline
        self.seconds = attempt_seconds
        cap = request.extensions.get(ANSWER_CAP)
        self.answer_cap = cap if isinstance(cap, int) else answer_cap
        error_cap = request.extensions.get(ERROR_CAP)
        self.error_cap = error_cap if isinstance(error_cap, int) else C.MAX_ERROR_ANSWER_BYTES
        authorization = request.headers.get("authorization", "")
        self.secrets = _secrets(authorization)
        self.wide = _wide_secrets(authorization)
        self.wide_escaped = _wide_escaped(authorization)
        self.authorization = authorization
        self.escaped = _escaped_secret(authorization)
        if now >= deadline:
            raise NoTimeLeft("no time left for this attempt within the call's deadline", request=request)
        # No single read, write, connect or pool wait may outlast the attempt.
        timeouts = dict(request.extensions.get("timeout") or {})
        left = deadline - now
        request.extensions["timeout"] = {
            name: left if value is None else min(value, left) for name, value in timeouts.items()
        } or {"connect": left, "read": left, "write": left, "pool": left}
        # Only encodings decoded here under the cap; anything else is a bad answer.
        request.headers["Accept-Encoding"] = "gzip, deflate"

    def scrub_raised(self, exc: BaseException) -> None:
        """The request's token out of an error raised while it was answered (see ``scrub_raised``)."""
        scrub_raised(exc, self.authorization)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def extensions(self, response: httpx.Response) -> dict[str, Any]:
        """The answer's extensions, its reason phrase scrubbed (httpx logs it)."""
        extensions = dict(response.extensions)
        phrase = extensions.get("reason_phrase")
        if isinstance(phrase, bytes) and self.secrets:
            extensions["reason_phrase"] = _scrub_bytes(phrase, self.secrets)
        return extensions

    def expired(self, request: httpx.Request) -> AttemptTimeout:
        return AttemptTimeout(
            f"no complete answer within {self.seconds:g} s (or the call's deadline)", request=request
        )

    def answer(self, response: httpx.Response, request: httpx.Request) -> tuple[httpx.Headers, _Reader]:
        """The answer's headers (scrubbed, decoding done here) and the reader of its body."""
        cap = self.answer_cap if 200 <= response.status_code < 300 else self.error_cap
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        length = response.headers.get("content-length", "")
        if encoding == "identity" and length.isdigit() and int(length) > cap:
            raise AnswerTooLarge(
                f"HTTP {response.status_code} answer of {length} bytes; at most {cap} expected",
                request=request,
            )
        if encoding not in ("identity", "gzip", "deflate", "x-gzip"):
            # Quoted as the server sent it, scrubbed first: a proxy may reflect anything into a header.
            said = _scrub_text(response.headers.get("content-encoding", ""), self.secrets)
            raise BadAnswerEncoding(f"unsupported content encoding {said.strip()[:40]!r}", request=request)
        headers = httpx.Headers(
            [(name, _scrub_text(value, self.secrets)) for name, value in response.headers.multi_items()]
        )
        if encoding != "identity":
            del headers["content-encoding"]
            headers.pop("content-length", None)
        return headers, _Reader(
            request, cap, encoding != "identity", self.secrets, self.escaped, self.wide, self.wide_escaped
        )


class _Reader:
    """Counts, decodes and scrubs the chunks of one body."""

    def __init__(
        self,
        request: httpx.Request,
        cap: int,
        compressed: bool,
        secrets: list[bytes],
        escaped: _Escaped | None = None,
        wide: Sequence[tuple[bytes, bytes]] = (),
        wide_escaped: Sequence[_Escaped] = (),
    ) -> None:
        self.request = request
        self.cap = cap
        self.raw = 0
        self.decoded = 0
        # wbits 47: a zlib or a gzip header, detected from the data.
        self.decoder = zlib.decompressobj(47) if compressed else None
        self.secrets = secrets
        self.escaped = escaped
        self.wide = wide
        self.wide_escaped = wide_escaped
        longest = max((len(secret) for secret in (*secrets, *(pair[0] for pair in wide))), default=1)
        escapes = [item.longest for item in (escaped, *wide_escaped) if item is not None]
        self.keep = max([longest, *escapes]) - 1
        self.tail = b""

    def feed(self, chunk: bytes) -> bytes:
        self.raw += len(chunk)
        if self.raw > self.cap:
            raise self._too_large()
        data = chunk
        if self.decoder is not None:
            try:
                data = self.decoder.decompress(chunk, self.cap - self.decoded + 1)
            except zlib.error as exc:
                raise BadAnswerEncoding(
                    f"body is not the encoding it claims: {exc}", request=self.request
                ) from None
            if self.decoder.unconsumed_tail:
                raise self._too_large()
        self.decoded += len(data)
        if self.decoded > self.cap:
            raise self._too_large()
        return self._scrub(data)

    def end(self) -> bytes:
        if self.decoder is not None and self.raw and not self.decoder.eof:
            raise BadAnswerEncoding("compressed body ends early", request=self.request)
        rest, self.tail = self.tail, b""
        return rest

    def _scrub(self, data: bytes) -> bytes:
        if not self.secrets:
            return data
        data = _scrub_bytes(self.tail + data, self.secrets)
        if self.escaped is not None and b"\\" in data:  # only an escaped form has a backslash
            data = self.escaped.pattern.sub(REDACTED, data)
        if b"\x00" in data:  # only UTF-16 or UTF-32 spell an ASCII token with NULs
            for secret, redacted in self.wide:
                data = data.replace(secret, redacted)
            if b"\\" in data:
                for escaped in self.wide_escaped:
                    data = escaped.pattern.sub(escaped.redacted, data)
        # A secret cut in two by a chunk boundary is scrubbed with the next chunk.
        cut = max(0, len(data) - self.keep)
        self.tail = data[cut:]
        return data[:cut]

    def _too_large(self) -> AnswerTooLarge:
        return AnswerTooLarge(
            f"answer larger than {self.cap} bytes, the most this request can get", request=self.request
        )


class BoundedTransport(httpx.BaseTransport):
    """Wraps a sync transport: every answer complete within its deadline, capped and scrubbed."""

    def __init__(
        self, inner: httpx.BaseTransport, *, attempt_seconds: float, answer_cap: int, watched: bool = False
    ) -> None:
        self._inner = inner
        self._seconds = attempt_seconds
        self._cap = answer_cap
        self._watched = watched  # ``inner`` writes through ``_network``'s streams, which mark what left

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        bound = _Bound(request, self._seconds, self._cap)
        # The default inner transport's sockets read this deadline at each operation, and mark how far
        # the request got (``_network``).
        token = set_attempt_deadline(bound.deadline)
        marking = set_progress(_entered(request, self._watched))
        try:
            response = self._inner.handle_request(request)
        except httpx.TransportError as exc:
            bound.scrub_raised(exc)
            raise
        finally:
            reset_progress(marking)
            reset_attempt_deadline(token)
        try:
            if bound.left() <= 0:
                raise bound.expired(request)
            headers, reader = bound.answer(response, request)
        except BaseException:
            response.close()
            raise
        return httpx.Response(
            response.status_code,
            headers=headers,
            stream=_SyncBody(response, reader, bound),
            extensions=bound.extensions(response),
        )

    def close(self) -> None:
        self._inner.close()


class _SyncBody(httpx.SyncByteStream):
    def __init__(self, response: httpx.Response, reader: _Reader, bound: _Bound) -> None:
        self._response = response
        self._reader = reader
        self._bound = bound

    def __iter__(self) -> Iterator[bytes]:
        chunks = iter(self._response.stream)  # type: ignore[arg-type]
        while True:
            # Set around each read, never across a yield: the caller's context is not ours to keep.
            token = set_attempt_deadline(self._bound.deadline)
            try:
                chunk = next(chunks, None)
            except httpx.TransportError as exc:
                self._bound.scrub_raised(exc)
                raise
            finally:
                reset_attempt_deadline(token)
            if chunk is None:
                break
            if self._bound.left() <= 0:
                raise self._bound.expired(self._reader.request)
            yield self._reader.feed(chunk)
        yield self._reader.end()

    def close(self) -> None:
        self._response.close()


class AsyncBoundedTransport(httpx.AsyncBaseTransport):
    """Wraps an async transport: the same bounds, and a deadline that also cuts a silent read."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        attempt_seconds: float,
        answer_cap: int,
        watched: bool = False,
    ) -> None:
        self._inner = inner
        self._seconds = attempt_seconds
        self._cap = answer_cap
        self._watched = watched  # as BoundedTransport's

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        bound = _Bound(request, self._seconds, self._cap)
        # The default inner transport's streams say whether the request began to leave (``_network``).
        progress = _entered(request, self._watched)
        token = set_progress(progress)
        try:
            with anyio.fail_after(max(0.0, bound.left())):
                response = await self._inner.handle_async_request(request)
        except httpx.TransportError as exc:
            bound.scrub_raised(exc)
            raise
        except TimeoutError:
            if progress.unsent:
                raise ConnectDeadline(
                    "no connection within the attempt's deadline; nothing was sent", request=request
                ) from None
            raise bound.expired(request) from None
        finally:
            reset_progress(token)
        try:
            headers, reader = bound.answer(response, request)
        except BaseException:
            await response.aclose()
            raise
        return httpx.Response(
            response.status_code,
            headers=headers,
            stream=_AsyncBody(response, reader, bound, self._watched),
            extensions=bound.extensions(response),
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


class _AsyncBody(httpx.AsyncByteStream):
    def __init__(self, response: httpx.Response, reader: _Reader, bound: _Bound, watched: bool) -> None:
        self._response = response
        self._reader = reader
        self._bound = bound
        # ``_network``'s streams cut each read at the deadline themselves (as the sync ones do): no cancel
        # scope per chunk, which anyio makes dear. Any other transport's reads are cut by a scope here.
        self._watched = watched

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._response.stream.__aiter__()  # type: ignore[union-attr]
        bound = self._bound
        while True:
            try:
                if self._watched:
                    # Set around each read, never across a yield: the caller's context is not ours to keep.
                    token = set_attempt_deadline(bound.deadline)
                    try:
                        chunk = await chunks.__anext__()
                    finally:
                        reset_attempt_deadline(token)
                else:
                    with anyio.fail_after(max(0.0, bound.left())):
                        chunk = await chunks.__anext__()
            except StopAsyncIteration:
                break
            except httpx.TimeoutException:
                if bound.left() > 0:
                    raise
                raise bound.expired(self._reader.request) from None
            except httpx.TransportError as exc:
                bound.scrub_raised(exc)
                raise
            except TimeoutError:
                raise bound.expired(self._reader.request) from None
            yield self._reader.feed(chunk)
        yield self._reader.end()

    async def aclose(self) -> None:
        await self._response.aclose()


class _NoResponseHeaders(logging.Filter):
    """httpcore's DEBUG trace prints the answer's headers, and the error of a step that failed, whose
    text can quote what the server sent (h11: ``illegal header line: bytearray(b'...')``): either can
    hold our token. The headers are left out, and of the error only its type is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg
        if not isinstance(message, str):
            return True
        if message.startswith("receive_response_headers.complete"):
            record.msg, record.args = "receive_response_headers.complete (headers not logged)", ()
        elif ".failed exception=" in message:
            step, _, error = message.partition(" exception=")
            kind = error.split("(", 1)[0]
            record.msg, record.args = f"{step} exception={kind} (its text not logged)", ()
        return True


for _name in ("httpcore.http11", "httpcore.http2"):
    logging.getLogger(_name).addFilter(_NoResponseHeaders())


@functools.lru_cache(maxsize=64)  # a client sends the same header on every request
def _secrets(authorization: str) -> list[bytes]:
    """The token of an Authorization header, as it may come back: raw, JSON-escaped, URL-encoded
    (``/`` kept or not, hex in either case), or base64-encoded (either alphabet, padded or not)."""
    token = authorization.split(" ", 1)[-1].strip()
    if len(token) < MIN_SECRET_LENGTH:
        return []
    encoded = {urllib.parse.quote(token, safe=""), urllib.parse.quote(token), urllib.parse.quote_plus(token)}
    forms = {token, json.dumps(token)[1:-1], *encoded, *(_LOWER_HEX.sub(_lower, form) for form in encoded)}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        forms.add(encode(token.encode()).decode().rstrip("="))  # padded, it holds this: "***=" is left
    return sorted((form.encode() for form in forms), key=len, reverse=True)


_LOWER_HEX = re.compile(r"%[0-9A-F]{2}")


def _lower(match: re.Match[str]) -> str:
    return match.group().lower()


# JSON may come in UTF-16 or UTF-32 (json.loads detects them; a charset can declare them): the token's
# forms in those too, each replaced by ``***`` in the same encoding, so the body stays readable.
_WIDE_ENCODINGS = ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")


@functools.lru_cache(maxsize=64)
def _wide_secrets(authorization: str) -> list[tuple[bytes, bytes]]:
    pairs = {
        (form.decode().encode(encoding), REDACTED.decode().encode(encoding))
        for encoding in _WIDE_ENCODINGS
        for form in _secrets(authorization)
    }
    return sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)


@functools.lru_cache(maxsize=64)
def _wide_escaped(authorization: str) -> list[_Escaped]:
    """The token's JSON-escaped spellings in UTF-16 and UTF-32 (none for a token too short to scrub)."""
    return [escaped for encoding in _WIDE_ENCODINGS if (escaped := _escaped_secret(authorization, encoding))]


class _Escaped:
    """The token as JSON may spell it: any character as itself, ``\\uXXXX`` (either case) or a short escape."""

    def __init__(self, pattern: re.Pattern[bytes], longest: int, redacted: bytes = REDACTED) -> None:
        self.pattern = pattern
        self.longest = longest  # bytes of the longest spelling: how much of a chunk's end to hold back
        self.redacted = redacted  # ``***`` in the pattern's encoding


_SHORT_ESCAPES = {
    "/": b"\\/",
    '"': b'\\"',
    "\\": b"\\\\",
    "\b": b"\\b",
    "\f": b"\\f",
    "\n": b"\\n",
    "\r": b"\\r",
    "\t": b"\\t",
}


def _either(alternatives: Sequence[str], encoding: str) -> bytes:
    """A pattern for any one of ``alternatives``, as ``encoding`` writes them."""
    return b"(?:" + b"|".join(re.escape(text.encode(encoding)) for text in dict.fromkeys(alternatives)) + b")"


def _hex_escape(code: int, encoding: str) -> bytes:
    """``\\uXXXX`` for one UTF-16 unit, the hex digits in either case."""
    return (
        _either(["\\"], encoding)
        + _either(["u"], encoding)
        + b"".join(_either([digit.lower(), digit.upper()], encoding) for digit in f"{code:04x}")
    )


@functools.lru_cache(maxsize=64)
def _escaped_secret(authorization: str, encoding: str = "utf-8") -> _Escaped | None:
    """A pattern for the token written with JSON escapes, which ``response.json()`` turns back into it;
    in ``encoding`` (JSON may come in UTF-16 or UTF-32 too, which ``json.loads`` detects)."""
    token = authorization.split(" ", 1)[-1].strip()
    if len(token) < MIN_SECRET_LENGTH:
        return None
    width = len("u".encode(encoding))
    parts: list[bytes] = []
    longest = 0
    for char in token:
        code = ord(char)
        if code > 0xFFFF:  # a UTF-16 surrogate pair
            high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
            escape, size = _hex_escape(high, encoding) + _hex_escape(low, encoding), 12 * width
        else:
            escape, size = _hex_escape(code, encoding), 6 * width
        spellings = [_either([char], encoding), escape]
        if char in _SHORT_ESCAPES:
            spellings.append(_either([_SHORT_ESCAPES[char].decode()], encoding))
        parts.append(b"(?:" + b"|".join(spellings) + b")")
        longest += max(size, len(char.encode(encoding)))
    return _Escaped(re.compile(b"".join(parts)), longest, REDACTED.decode().encode(encoding))


def scrub_raised(exc: BaseException, token: str) -> None:
    """Take every form of ``token`` out of the text of ``exc`` and of the exceptions it chains to.

    h11 quotes a malformed status or header line whole in its error (``illegal header line:
    bytearray(b'...')``), and a server may have echoed the token there; httpx and httpcore chain
    that error. The texts are changed in place, so the exception keeps its type for the outcome.
    """
    forms = _secrets(token)
    if not forms:
        return
    # As bytes' repr spells them too: a backslash doubled, a quote escaped.
    spelled = {form.replace(b"\\", b"\\\\").replace(b"'", b"\\'") for form in forms}
    ordered = sorted({*forms, *spelled}, key=len, reverse=True)
    stack: list[BaseException] = [exc]
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.args = tuple(
            _scrub_text(arg, ordered) if isinstance(arg, str) else arg for arg in current.args
        )
        stack.extend(chained for chained in (current.__cause__, current.__context__) if chained is not None)


def _scrub_bytes(data: bytes, secrets: list[bytes]) -> bytes:
    for secret in secrets:
        data = data.replace(secret, REDACTED)
    return data


def _scrub_text(value: str, secrets: list[bytes]) -> str:
    for secret in secrets:
        value = value.replace(secret.decode(), REDACTED.decode())
    return value


def scrub(text: str, token: str) -> str:
    """``text`` with every form of ``token`` replaced by ``***``."""
    return _scrub_text(text, _secrets(token))


def _limits() -> httpx.Limits:
    return httpx.Limits(max_connections=C.MAX_CONNECTIONS, max_keepalive_connections=C.MAX_CONNECTIONS)


def env_proxy(base_url: str) -> str | None:
    """The proxy the environment names for ``base_url`` (HTTPS_PROXY, ALL_PROXY, NO_PROXY), if any.

    httpx reads these only when it builds its own transport; ours wraps one, so it asks here.
    """
    url = httpx.URL(base_url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(url.host):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def bounded(inner: httpx.BaseTransport | None, attempt_seconds: float, base_url: str) -> BoundedTransport:
    """The sync transport of a client: ``inner`` (default: pooled HTTP, the environment's proxy), bounded.

    Only the default's sockets also end each read and write by the deadline (so a trickled status
    line or header is cut too); an injected ``inner`` keeps its own behaviour before the headers.
    """
    return BoundedTransport(
        inner or bounded_http_transport(_limits(), env_proxy(base_url)),
        attempt_seconds=attempt_seconds,
        answer_cap=C.MAX_CALL_ANSWER_BYTES,
        watched=inner is None,
    )


def async_bounded(
    inner: httpx.AsyncBaseTransport | None, attempt_seconds: float, base_url: str
) -> AsyncBoundedTransport:
    """The async transport of a client: ``inner`` (default: pooled HTTP, the environment's proxy), bounded."""
    return AsyncBoundedTransport(
        inner or async_http_transport(_limits(), env_proxy(base_url)),
        attempt_seconds=attempt_seconds,
        answer_cap=C.MAX_CALL_ANSWER_BYTES,
        watched=inner is None,
    )
