"""Where a rate budget lives: in this process, in a SQLite file shared on one host, or in Redis.

Each backend keeps one number per budget key, the GCRA "theoretical arrival time" (TAT), and
``reserve`` updates it atomically: the caller gets the moment it may send (a slot), or None when that
moment is further than ``max_wait`` away (then nothing is taken). Slots are handed out in the order
callers ask, so retries and new requests queue fairly and no waiter is passed over. ``release`` gives
back a slot whose request never left (its wait was cut): the TAT moves back one interval, but only while it
is still the one that booking stored. Moved back under later bookings, it would let two requests go in
each of their slots; left alone, the slot is lost, which costs someone a short wait and never a burst.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import httpcore

from ._logs import log_safely
from ._network import aresolve, resolve
from .errors import ConfigurationError
from .text import shorten, without_password

log = logging.getLogger("billing_events")

# Redis: how long one call may take (at most, and at least when the request's own wait is shorter), how
# long to pace locally after a failed call, and how many calls of one process may be out at once.
REDIS_TIMEOUT = 0.5
MIN_REDIS_CALL = 0.05
REDIS_RETRY_AFTER = 5.0
REDIS_CALLERS = 4
# A stored TAT of unknown age further ahead than this (plus the most a request could book) is a clock
# step's leftover: start over. A TAT whose write time is kept is never stale for being far ahead.
STALE_AFTER = 300.0
# Threads that give slots back to SQLite files for event loops: no loop waits for another process's lock.
SQLITE_RELEASERS = 2

T = TypeVar("T")


class Booking(NamedTuple):
    """A slot ``reserve`` booked: how long to wait for it, and the TAT the booking stored (in the store's own
    clock), which ``release`` compares to tell whether anyone booked since."""

    wait: float
    tat: float


def gcra(
    tat: float | None,
    now: float,
    interval: float,
    burst: float,
    max_wait: float,
    written_at: float | None = None,
    *,
    steady: bool = False,
) -> Booking | None:
    """The wait and the new TAT of one request, or None when it would wait longer than ``max_wait``.

    ``written_at`` is the clock's reading when the TAT was stored: later than ``now``, the clock
    stepped back since, and the TAT moves back with it (else every slot would wait out the step).
    A TAT far ahead is then a booking (a slow pace, or requests allowed to wait long), never stale, as it
    is with a clock that never steps (``steady``). Only a TAT of unknown age (a file written before its
    rows kept their time) further ahead than any booking this request could make is taken for a step's
    leftover.
    """
    if tat is not None and written_at is not None and written_at > now:
        tat -= written_at - now
    unknown_age = not steady and written_at is None
    if tat is None or tat < now or (unknown_age and tat > now + STALE_AFTER + interval + burst + max_wait):
        tat = now
    wait = max(0.0, tat - burst - now)
    if wait > max_wait:
        return None
    return Booking(wait, tat + interval)


class Budget(Protocol):
    """A store of slots; ``reserve`` is atomic across every user of the same key."""

    name: str

    def reserve(self, key: str, interval: float, burst: float, max_wait: float) -> Booking | None: ...

    async def areserve(self, key: str, interval: float, burst: float, max_wait: float) -> Booking | None:
        """``reserve``; cancelled while the store books, a slot it books anyway is given back."""
        ...

    def release(self, key: str, interval: float, booking: Booking) -> None:
        """Give back a slot that ``reserve`` booked and its request never used, if nobody booked since;
        never waits long, nor blocks an event loop it is called on."""
        ...


def give_back(store: Budget, key: str, interval: float, booking: Booking) -> None:
    """``store.release``, best effort: its caller is being cancelled or interrupted, so it never raises (a
    failure is logged at DEBUG; a slot lost is only a short wait for someone)."""
    try:
        store.release(key, interval, booking)
    except Exception as exc:
        log_safely(
            log.debug, "rate budget %s: a slot could not be given back (%s)", store.name, shorten(str(exc))
        )


def _when_booked(
    call: concurrent.futures.Future[Booking | None] | asyncio.Future[Booking | None],
    release: Callable[[Booking], None],
) -> None:
    """Its caller stopped waiting for ``call``, which may still book a slot: that slot goes to ``release``."""

    def booked(done: concurrent.futures.Future[Booking | None] | asyncio.Future[Booking | None]) -> None:
        booking = None if done.cancelled() or done.exception() is not None else done.result()
        if booking is not None:
            release(booking)

    call.add_done_callback(booked)


class MemoryBudget:
    """A budget for one process: shared by its threads and tasks."""

    name = "process"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tats: dict[str, float] = {}
        self._pid = os.getpid()

    def _forked(self) -> None:
        if self._pid != os.getpid():
            # A forked child has its own budget: a lock held at fork time would stay held forever.
            self._lock, self._tats, self._pid = threading.Lock(), {}, os.getpid()

    def reserve(self, key: str, interval: float, burst: float, max_wait: float) -> Booking | None:
        self._forked()
        with self._lock:
            booking = gcra(self._tats.get(key), time.monotonic(), interval, burst, max_wait, steady=True)
            if booking is not None:
                self._tats[key] = booking.tat
            return booking

    async def areserve(self, key: str, interval: float, burst: float, max_wait: float) -> Booking | None:
        return self.reserve(key, interval, burst, max_wait)

    def release(self, key: str, interval: float, booking: Booking) -> None:
        self._forked()
        with self._lock:
            if self._tats.get(key) == booking.tat:  # a TAT moved into the past reads as now
                self._tats[key] -= interval


class SQLiteBudget:
    """A budget shared by the processes of one host through a SQLite file (standard library, no server)."""

    name = "sqlite"

    def __init__(self, path: Path, prefix: str) -> None:
        self.path = path
        self.prefix = prefix
        self._local = threading.local()
        self._connect()  # fail early on a path that cannot be opened

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        try:
            conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
            # The budget needs no durability: a lost write only makes the next slot a little early.
            conn.execute("PRAGMA synchronous=OFF")
            # Another process may be switching it at this moment; WAL only makes writes cheaper.
            with contextlib.suppress(sqlite3.OperationalError):
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS budget (key TEXT PRIMARY KEY, tat REAL NOT NULL)")
            try:
                # When each TAT was written; a file made before this column gets it here.
                conn.execute("ALTER TABLE budget ADD COLUMN at REAL")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):
                    raise
        except sqlite3.Error as exc:
            raise ConfigurationError(
                f"rate_budget: cannot use the SQLite file {str(self.path)!r}: {exc}"
            ) from None
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def reserve(self, key: str, interval: float, burst: float, max_wait: float) -> Booking | None:
        conn = self._connect()
        name = f"{self.prefix}:{key}"
        # Waiting for another process's lock counts against the wait this request may spend.
        _busy_timeout(conn, max_wait)
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT tat, at FROM budget WHERE key = ?", (name,)).fetchone()
            # Wall-clock time: the one clock every process of the host reads alike.
            now = time.time()
            tat, written_at = row if row else (None, None)
            booking = gcra(tat, now, interval, burst, max_wait, written_at)
            if booking is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO budget (key, tat, at) VALUES (?, ?, ?)", (name, booking.tat, now)
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return booking

    async def areserve(self, key: str, interval: float, burst: float, max_wait: float) -> Booking | None:
        # A write lock may be held by another process for a moment: never block the event loop on it. On the
        # loop's executor, whose threads asyncio.run() waits for, so a booking in flight at exit ends first.
        booking: concurrent.futures.Future[Booking | None] = concurrent.futures.Future()
        asyncio.get_running_loop().run_in_executor(
            None, _settle, booking, lambda: self.reserve(key, interval, burst, max_wait)
        )
        try:
            # The executor's threads may all be busy (bookings waiting for another process's lock): the wait
            # for one counts against this request's wait, which no booking may outlast.
            async with asyncio.timeout(max_wait):
                return await asyncio.wrap_future(booking)
        except TimeoutError:
            # As a lock held past the busy timeout does on the thread: the pacer paces locally. A booking not
            # begun never begins; one under way goes back once made.
            _when_booked(booking, lambda slot: give_back(self, key, interval, slot))
            raise sqlite3.OperationalError(f"no booking of the budget file within {max_wait:g}s") from None
        except asyncio.CancelledError:
            # The thread books on: its slot goes back as it is booked (on that thread, off the loop).
            _when_booked(booking, lambda slot: give_back(self, key, interval, slot))
            raise

    def release(self, key: str, interval: float, booking: Booking) -> None:
        if _on_event_loop():
            # Another process may hold the file's lock for a while: a daemon thread waits for it, not the
            # loop, and nobody waits for that thread.
            _SQLITE_RELEASES.submit(lambda: give_back(self, key, interval, booking))
            return
        conn = self._connect()
        _busy_timeout(conn, interval)  # waiting for the lock longer than the slot is worth is no use
        # One statement, so a transaction of its own; the row's write time stays, the TAT is of its clock.
        # The exact REAL that booking stored: anyone's booking since has moved it on.
        conn.execute(
            "UPDATE budget SET tat = tat - ? WHERE key = ? AND tat = ?",
            (interval, f"{self.prefix}:{key}", booking.tat),
        )


def _on_event_loop() -> bool:
    """Whether this thread is running an event loop, which nothing may block."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _busy_timeout(conn: sqlite3.Connection, seconds: float) -> None:
    """Wait for another process's write lock at most ``seconds`` (5 s at most, 1 ms at least)."""
    conn.execute(f"PRAGMA busy_timeout = {max(1, int(min(seconds, 5.0) * 1000))}")


# GCRA on the server, with the server's clock: machines with skewed clocks still share one budget.
# KEYS[2] holds when KEYS[1] was written, so a step back of the server's clock moves the TAT back too.
_REDIS_GCRA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local interval, burst, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local written_at = tonumber(redis.call('GET', KEYS[2]) or '0')
if written_at > now then tat = tat - (written_at - now) end
if tat < now then
  tat = now
elseif written_at == 0 and tat > now + tonumber(ARGV[4]) + interval + burst + max_wait then
  tat = now
end
local wait = tat - burst - now
if wait < 0 then wait = 0 end
if wait > max_wait then return '-1' end
local new_tat = tat + interval
local stored = string.format('%.6f', new_tat)
local ttl = math.ceil((new_tat - now) * 1000) + 1000
redis.call('SET', KEYS[1], stored, 'PX', ttl)
redis.call('SET', KEYS[2], string.format('%.6f', now), 'PX', ttl)
return {string.format('%.6f', wait), stored}
"""

# A slot given back: the TAT moves back one interval and keeps its key's time to live (a TAT in the past
# reads as now), if it is still the one the booking stored (ARGV[2], a float parsed from that text, so the
# same number): after anyone's booking since, the slot is lost. An expired key has nothing to give back.
_REDIS_RELEASE = """
local ttl = redis.call('PTTL', KEYS[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '')
if ttl <= 0 or tat == nil or tat ~= tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], string.format('%.6f', tat - tonumber(ARGV[1])), 'PX', ttl)
return 1
"""


class _Scripts(NamedTuple):
    """The budget's scripts, registered on one client."""

    gcra: Any
    release: Any


# Whether this thread's or task's last Redis booking came from the local fallback: its slot goes back there.
_booked_locally: contextvars.ContextVar[bool] = contextvars.ContextVar("booked_locally", default=False)


class RedisBudget:
    """A budget shared by every process and machine that reaches one Redis server."""

    name = "redis"

    def __init__(self, url: str, prefix: str) -> None:
        try:
            import redis
            import redis.backoff
            import redis.connection
            import redis.retry
        except ImportError:
            raise ConfigurationError(
                "rate_budget: a redis:// budget needs the redis package (pip install 'billing-events[redis]')"
            ) from None
        try:
            # A typo (a port out of range, a bad option) is a configuration error now, not a silent
            # fall back to local pacing at the first request. redis-py's messages rarely quote the URL.
            parse: Any = redis.connection.parse_url  # untyped in redis-py
            parse(url)
        except ValueError as exc:
            # Some of them do (a netloc invalid under NFKC is quoted whole): its password is masked.
            raise ConfigurationError(f"rate_budget: {without_password(str(exc), url)}") from None
        self.prefix = prefix
        self._url = url
        self._redis_module: Any = redis
        # What makes a call fail over to local pacing: Redis' errors, a failed connect, an answer that is
        # not our script's (something else listens there).
        self._failures: tuple[type[Exception], ...] = (
            redis.RedisError,
            httpcore.ConnectError,
            httpcore.ConnectTimeout,
            ValueError,
        )
        self._sync: _Scripts | None = None
        self._async: _Scripts | None = None
        self._pid = os.getpid()
        self._warned = False
        self._local = MemoryBudget()
        self._down_until = 0.0
        self._executor: _DaemonPool | None = None

    def _clients(self) -> None:
        if self._pid != os.getpid():
            self._sync = self._async = None  # a forked child opens its own connections
            self._executor = None  # and has no thread of its parent's pool
            self._pid = os.getpid()

    def _options(self) -> dict[str, Any]:
        # No retries inside redis-py: a slow or absent Redis must not hold a request back for long.
        retry = self._redis_module.retry.Retry(self._redis_module.backoff.NoBackoff(), 0)
        return {"socket_timeout": REDIS_TIMEOUT, "socket_connect_timeout": REDIS_TIMEOUT, "retry": retry}

    def _available(self) -> bool:
        self._clients()
        return time.monotonic() >= self._down_until

    def _host(self) -> tuple[str, int] | None:
        """The host name a connection looks up first; None for a unix socket or an IP address."""
        parts = urlsplit(self._url)
        if parts.scheme == "unix" or not parts.hostname:
            return None
        return parts.hostname, parts.port or 6379

    def _pin(self, client: Any, addresses: list[str]) -> _Scripts:
        """The client, connecting to the address just looked up: redis-py's own lookup has no bound.

        TLS (rediss://) keeps the name, which the certificate is checked against: redis-py looks it up
        again, unbounded, but only after the bounded lookup above answered, so a resolver that hangs is
        found there first.
        """
        if addresses and urlsplit(self._url).scheme == "redis":
            client.connection_pool.connection_kwargs["host"] = addresses[0]
        return _Scripts(client.register_script(_REDIS_GCRA), client.register_script(_REDIS_RELEASE))

    def _locally(self, key: str, interval: float, burst: float, max_wait: float) -> Booking | None:
        """A slot of this process's own budget, paced around Redis; ``release`` gives it back there."""
        _booked_locally.set(True)
        return self._local.reserve(key, interval, burst, max_wait)

    def _failed(
        self, exc: Exception, key: str, interval: float, burst: float, max_wait: float
    ) -> Booking | None:
        """Redis failed, or something else answers there: paced locally, and looked up again when Redis is
        asked next (it may have moved)."""
        self._unreachable(exc)
        self._sync = self._async = None
        return self._locally(key, interval, burst, max_wait)

    def reserve(self, key: str, interval: float, burst: float, max_wait: float) -> Booking | None:
        _booked_locally.set(False)
        if not self._available():
            return self._locally(key, interval, burst, max_wait)
        bound = _call_bound(max_wait)
        # redis-py bounds each read from the socket, not the call: a Redis that trickles its answer would
        # hold the request for as long as it likes. The call runs on the pool's thread, and waiting for it
        # is what is bounded.
        calling = self._pool().submit(lambda: self._book(key, interval, burst, max_wait))
        try:
            return calling.result(timeout=bound)
        except concurrent.futures.TimeoutError:
            calling.cancel()
            _when_booked(calling, lambda booking: self._release_later(key, interval, booking))
            return self._late(bound, key, interval, burst, max_wait)
        except self._failures as exc:
            return self._failed(exc, key, interval, burst, max_wait)
        except BaseException:  # Ctrl-C while Redis books: the slot it books anyway goes back
            _when_booked(calling, lambda booking: self._release_later(key, interval, booking))
            raise

    def _scripts(self) -> _Scripts:
        """The scripts of the sync client, which connects first if need be (on the pool's thread)."""
        scripts = self._sync
        if scripts is None:
            host = self._host()
            addresses = [] if host is None else resolve(*host, REDIS_TIMEOUT)
            client = self._redis_module.Redis.from_url(self._url, **self._options())
            scripts = self._sync = self._pin(client, addresses)
        return scripts

    def _book(self, key: str, interval: float, burst: float, max_wait: float) -> Booking | None:
        """One call of the GCRA script (on the pool's thread)."""
        answer = self._scripts().gcra(keys=self._keys(key), args=[interval, burst, max_wait, STALE_AFTER])
        return _booking_of(answer, max_wait)

    def release(self, key: str, interval: float, booking: Booking) -> None:
        if _booked_locally.get():
            self._local.release(key, interval, booking)
        else:
            self._release_later(key, interval, booking)

    def _release_later(self, key: str, interval: float, booking: Booking) -> None:
        # Handed to the pool and never waited for: the caller is being cancelled or interrupted.
        self._pool().submit(lambda: self._give_back(key, interval, booking))

    def _give_back(self, key: str, interval: float, booking: Booking) -> None:
        """One call of the release script (on the pool's thread); a slot lost is only a short wait."""
        try:
            self._scripts().release(keys=self._keys(key), args=[interval, booking.tat])
        except Exception as exc:
            log_safely(log.debug, "rate budget: Redis did not take a slot back (%s)", type(exc).__name__)

    def _pool(self) -> _DaemonPool:
        self._clients()
        if self._executor is None:
            self._executor = _DaemonPool(REDIS_CALLERS, "billing-events-budget")
        return self._executor

    def _late(self, bound: float, key: str, interval: float, burst: float, max_wait: float) -> Booking | None:
        """Redis did not answer within ``bound``: taken as unreachable (a slot it might still give would come
        too late to use, and goes back), and this process paces on its own for a while. Events never wait
        on it."""
        self._unreachable(TimeoutError(f"no answer within {bound:g}s"))
        self._sync = self._async = None  # a connection left mid-answer is not used again
        return self._locally(key, interval, burst, max_wait)

    async def areserve(self, key: str, interval: float, burst: float, max_wait: float) -> Booking | None:
        _booked_locally.set(False)
        if not self._available():
            return self._locally(key, interval, burst, max_wait)
        bound = _call_bound(max_wait)
        # A task of its own: this one may stop waiting for it, and a slot it books anyway then goes back.
        calling = asyncio.ensure_future(self._abook(key, interval, burst, max_wait))
        try:
            async with asyncio.timeout(bound):
                return await asyncio.shield(calling)
        except TimeoutError:
            calling.cancel()
            _when_booked(calling, lambda booking: self._release_later(key, interval, booking))
            return self._late(bound, key, interval, burst, max_wait)
        except self._failures as exc:
            return self._failed(exc, key, interval, burst, max_wait)
        except asyncio.CancelledError:
            _when_booked(calling, lambda booking: self._release_later(key, interval, booking))
            raise

    async def _abook(self, key: str, interval: float, burst: float, max_wait: float) -> Booking | None:
        """One call of the GCRA script on the async client, which connects first if need be."""
        if self._async is None:
            from redis import asyncio as aioredis

            host = self._host()
            # Never on the loop's executor, which asyncio.run() waits for at exit.
            addresses = [] if host is None else await aresolve(*host, REDIS_TIMEOUT)
            client = aioredis.Redis.from_url(self._url, **self._options())
            self._async = self._pin(client, addresses)
        answer = await self._async.gcra(keys=self._keys(key), args=[interval, burst, max_wait, STALE_AFTER])
        return _booking_of(answer, max_wait)

    def _keys(self, key: str) -> list[str]:
        name = f"{self.prefix}:{key}"
        return [name, f"{name}:at"]

    def _unreachable(self, exc: Exception) -> None:
        # Events matter more than the shared budget: without Redis, this process paces on its own
        # and asks Redis again after a pause.
        self._down_until = time.monotonic() + REDIS_RETRY_AFTER
        if not self._warned:
            log_safely(
                log.warning,
                "rate budget: Redis is unreachable or answers wrongly (%s); pacing locally until it is back",
                type(exc).__name__,
            )
            self._warned = True


class _DaemonPool:
    """A few daemon threads that run calls handed to them; a future per call.

    Not ``concurrent.futures.ThreadPoolExecutor``: its threads are joined at interpreter exit (a Redis
    that trickles an answer would hold the process there), and it takes no call once the interpreter
    shuts down, which is when a background sender's exit hook still sends.
    """

    def __init__(self, threads: int, name: str) -> None:
        self._threads = threads
        self._name = name
        self._empty()

    def _empty(self) -> None:
        """No thread and no call yet; in a forked child, none of its parent's (whose lock may be held)."""
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = (
            queue.SimpleQueue()
        )
        self._started = 0
        self._idle = 0
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def submit(self, call: Callable[[], T]) -> concurrent.futures.Future[T]:
        if self._pid != os.getpid():
            self._empty()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._idle == 0 and self._started < self._threads:
                self._started += 1
                threading.Thread(target=self._work, name=f"{self._name}-{self._started}", daemon=True).start()
            else:
                self._idle = max(0, self._idle - 1)
        self._calls.put((call, future))
        return future

    def _work(self) -> None:
        while True:
            call, future = self._calls.get()
            _settle(future, call)
            with self._lock:
                self._idle += 1


# Shared by every SQLite budget of the process: a give-back is rare, and quick once the file is free.
_SQLITE_RELEASES = _DaemonPool(SQLITE_RELEASERS, "billing-events-release")


def _settle(future: concurrent.futures.Future[T], call: Callable[[], T]) -> None:
    """Run ``call`` for ``future`` (on the thread it was handed to), unless ``future`` was cancelled first."""
    if future.set_running_or_notify_cancel():
        try:
            future.set_result(call())
        except BaseException as exc:  # handed to the caller, who is waiting for it
            future.set_exception(exc)


def _call_bound(max_wait: float) -> float:
    """How long one call to Redis may take: its own bound, or the request's wait for a slot if shorter
    (never under ``MIN_REDIS_CALL``, which a loopback Redis answers well within)."""
    return min(REDIS_TIMEOUT, max(max_wait, MIN_REDIS_CALL))


def _booking_of(answer: object, max_wait: float) -> Booking | None:
    """The script's answer: the wait for the slot and the TAT it stored, or None ("-1") for no slot.
    Anything else (a wait past ``max_wait``, which the script never gives, or no numbers) is a Redis gone
    wrong: ValueError, and the pacer paces locally."""
    parts = answer if isinstance(answer, list) else [answer]
    texts = [part.decode(errors="replace") if isinstance(part, bytes) else str(part) for part in parts[:3]]
    numbers = [float(text[:40]) for text in texts]
    if numbers == [-1]:
        return None
    if len(numbers) != 2 or not all(map(math.isfinite, numbers)) or not 0 <= numbers[0] <= max_wait:
        raise ValueError(
            f"the rate budget script answered {shorten(' '.join(texts))!r}, not a wait within {max_wait:g}s"
            " and a time"
        )
    return Booking(*numbers)


def open_budget(url: str | None) -> Budget:
    """The budget a ``rate_budget`` URL names: ``sqlite:///path?key=...``, ``redis://host:port/db?key=...``."""
    if url is None:
        return MemoryBudget()
    if not isinstance(url, str):
        raise ConfigurationError(f"rate_budget: must be a URL string, got {type(url).__name__}")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket, or a netloc invalid under NFKC (quoted whole)
        raise ConfigurationError(f"rate_budget: {without_password(str(exc), url)}") from None
    if parts.fragment or url.endswith("#"):
        raise ConfigurationError(
            "rate_budget: a '#' ends the URL there, so it cannot be in a budget name; write it as %23"
        )
    try:
        # Every part name=value: "key=acme&eu" would silently be the budget "acme".
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ConfigurationError(
            "rate_budget: each part of the query must be name=value; write a '&' in a budget name as %26"
        ) from None
    prefix = (query.get("key") or ["billing-events"])[0] or "billing-events"
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if not path or path.endswith("/"):
            raise ConfigurationError(
                "rate_budget: a sqlite budget needs a file, e.g. sqlite:///var/tmp/acme.db?key=acme"
            )
        return SQLiteBudget(Path(path), prefix)
    if parts.scheme in ("redis", "rediss", "unix"):
        rest = [
            f"{name}={value}" for name, values in query.items() if name != "key" for value in values if value
        ]
        base = parts._replace(query="&".join(rest)).geturl()
        return RedisBudget(base, prefix)
    raise ConfigurationError(
        f"rate_budget: unknown scheme {parts.scheme!r}; use sqlite:///path?key=NAME or redis://host:port/db?key=NAME"
    )
