"""One event loop and a few open clients per worker thread, kept from one partition to the next.

A worker runs many partitions one after the other. A new client per partition
paid for its construction, its TLS context and a new connection per lane each
time: a quarter of the instructions per row of 3,000-row partitions (callgrind:
323,000 against 234,000 with the client kept). Each engine thread that runs partitions
(a Dask task thread, a Spark Python worker) keeps its own loop, so nothing is
shared between threads, and a process forked from one (Spark's daemon) starts
afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import os
import pickle
import threading
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from ..aio import AsyncLago, AsyncTogai

Client = AsyncTogai | AsyncLago
T = TypeVar("T")
# Clients kept per thread (one per distinct provider and options); the oldest is closed beyond this.
KEPT_CLIENTS = 4


class _ThreadClients:
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.clients: OrderedDict[bytes, Client] = OrderedDict()

    def close(self) -> None:
        try:
            for client in self.clients.values():
                self.loop.run_until_complete(client.aclose())
        finally:
            self.clients.clear()
            self.loop.close()


_local = threading.local()


# The process whose heap was frozen (a forked child has a heap of its own to freeze).
_frozen_in: int | None = None
_freezing = threading.Lock()


# Who this process is, in any machine: a forked child has another pid, a spawned one another token.
_TOKEN = uuid.uuid4().hex


def this_process() -> str:
    return f"{_TOKEN}:{os.getpid()}"


def freeze_heap_once() -> None:
    """Move everything the process holds now out of the collector's sight, once per process.

    A worker's heap is large (an engine's own objects, pandas: about 140,000 in the bench's
    Dask workers), and every full collection walks all of it: 6 to 8 of them per worker per
    run, each about 100 ms in which no answer is read. Python starts one once enough objects
    have outlived two younger collections, and requests in flight make such objects all the
    time. After ``gc.freeze()`` a full collection walks only what was made since. Measured in
    the bench's Dask run at 50 ms: 7 to 9 µs of worker CPU per row in the collector, 2 after.
    What is frozen is still freed by reference counting; only a reference cycle that exists
    now and becomes garbage later stays, once. So only a worker freezes: a process other than
    the one that called ``Backfill.prepare()`` (whose heap is the caller's own: a local run, an
    engine's threads). ``Backfill(freeze_heap=False)`` leaves every collector as it is.
    """
    global _frozen_in
    with _freezing:
        if _frozen_in != os.getpid():
            _frozen_in = os.getpid()
            gc.freeze()


def _identity(provider: str, options: Mapping[str, Any]) -> bytes | None:
    """A digest of what makes two clients interchangeable; None if the options cannot be compared."""
    try:
        return hashlib.sha256(pickle.dumps((provider, sorted(options.items())))).digest()
    except Exception:  # an option that does not pickle or sort: that backfill gets a client of its own
        return None


def _make(provider: str, options: Mapping[str, Any]) -> Client:
    return AsyncTogai(**options) if provider == "togai" else AsyncLago(**options)


def run_with_client(provider: str, options: Mapping[str, Any], work: Callable[[Client], Awaitable[T]]) -> T:
    """Run ``work(client)`` on this thread's loop, with a client kept from an earlier partition if one fits."""
    identity = _identity(provider, options)
    if identity is None:
        return asyncio.run(_once(_make(provider, options), work))
    kept: _ThreadClients | None = getattr(_local, "kept", None)
    if kept is None or kept.pid != os.getpid():
        kept = _local.kept = _ThreadClients()  # a forked child never touches its parent's loop
    client = kept.clients.pop(identity, None) or _make(provider, options)
    kept.clients[identity] = client
    while len(kept.clients) > KEPT_CLIENTS:
        _, oldest = kept.clients.popitem(last=False)
        kept.loop.run_until_complete(oldest.aclose())
    try:
        return kept.loop.run_until_complete(work(client))
    except BaseException:
        # Interrupted or failed mid-send: the next partition starts with a new loop and new clients.
        _local.kept = None
        # Closing a broken loop is best effort; the error that matters is the one raised.
        with contextlib.suppress(Exception):
            kept.close()
        raise


async def _once(client: Client, work: Callable[[Client], Awaitable[T]]) -> T:
    async with client:
        return await work(client)
