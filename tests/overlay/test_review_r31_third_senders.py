"""Third reading of the r31 sender fixes (metrics, logging, close, flush, read-back): defects as strict xfails."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from billing_events import AsyncTogai, RetryPolicy, Togai

from .scripted import togai_event

ONCE = RetryPolicy(max_attempts=1)
BOUND = 5.0  # every wait in here ends by then; flush() is given far longer to show it does not return


def test_flush_waiting_while_close_keeps_events_in_the_spool_returns_at_the_stop(tmp_path: Path) -> None:
    """A user calls ``flush(timeout=120)`` on one thread while another thread's ``close(timeout=0)`` stops the
    spool sender short (its request hangs): the close leaves the events in the spool for the next sender and
    wakes the flush, which then goes back to waiting and returns False only after its full 120 seconds,
    although nothing can settle those events any more. They should get False as soon as the close kept them."""
    release = threading.Event()

    def hang(request: httpx.Request) -> httpx.Response:
        release.wait(BOUND)
        return httpx.Response(200, json={})

    client = Togai("t", base_url="http://togai.test", transport=httpx.MockTransport(hang), retry=ONCE)
    sender = client.background(spool=tmp_path / "spool", flush_interval=60.0)
    answers: list[bool] = []
    try:
        for number in range(3):
            sender.track(togai_event(number))
        flusher = threading.Thread(target=lambda: answers.append(sender.flush(timeout=120.0)), daemon=True)
        flusher.start()
        sender.close(timeout=0.0)
        assert sender._queue.kept == 3  # the stop short kept them in the spool
        flusher.join(BOUND)
        assert answers == [False], "flush() still waiting after close() kept its events in the spool"
    finally:
        release.set()


def test_flush_after_a_close_that_kept_events_answers_at_once(tmp_path: Path) -> None:
    """After a ``close()`` that left events in the spool, ``flush(timeout=120)`` (an application's shutdown
    path calling flush then close, in either order) blocks the caller for 120 seconds before saying False.
    It should say False at once: README says it returns False once a close() left events in a spool."""
    release = threading.Event()

    def hang(request: httpx.Request) -> httpx.Response:
        release.wait(BOUND)
        return httpx.Response(200, json={})

    client = Togai("t", base_url="http://togai.test", transport=httpx.MockTransport(hang), retry=ONCE)
    sender = client.background(spool=tmp_path / "spool", flush_interval=60.0)
    answers: list[bool] = []
    try:
        sender.track(togai_event(1))
        sender.close(timeout=0.0)
        assert sender._queue.kept == 1
        flusher = threading.Thread(target=lambda: answers.append(sender.flush(timeout=120.0)), daemon=True)
        flusher.start()
        flusher.join(BOUND)
        assert answers == [False], "flush() on a closed sender whose spool kept events is still waiting"
    finally:
        release.set()


def test_async_flush_after_a_close_that_kept_events_answers_at_once(tmp_path: Path) -> None:
    """The asyncio sender: after ``await close(timeout=0.1)`` left events in the spool (their request hung),
    ``await flush(timeout=120)`` holds the caller's coroutine for 120 seconds before answering False. It
    should answer False at once."""

    async def main() -> bool | None:
        hung = asyncio.Event()

        async def hang(request: httpx.Request) -> httpx.Response:
            await hung.wait()
            return httpx.Response(200, json={})

        client = AsyncTogai(
            "t", base_url="http://togai.test", transport=httpx.MockTransport(hang), retry=ONCE
        )
        sender = client.background(spool=tmp_path / "spool", flush_interval=60.0)
        sender.track(togai_event(1))
        await sender.close(timeout=0.1)
        assert sender._queue.kept == 1
        try:
            return await asyncio.wait_for(sender.flush(timeout=120.0), BOUND)
        except TimeoutError:
            return None
        finally:
            hung.set()
            await client.aclose()

    assert asyncio.run(main()) is False, "flush() still waiting after close() kept its events in the spool"


def test_a_second_close_after_one_that_kept_events_returns_at_once(tmp_path: Path) -> None:
    """``sender.close(timeout=1)`` inside ``with client.background(spool=...) as sender:`` (or any second
    close(), the exit hook's aside): when the first close left events in the spool for the next sender, the
    second close() (the ``with`` block's exit, default timeout 30 s) waits out its whole timeout, since it
    waits in flush() for events nothing will settle. It should return the stats at once, as it does when the
    first close settled everything."""
    release = threading.Event()

    def hang(request: httpx.Request) -> httpx.Response:
        release.wait(BOUND)
        return httpx.Response(200, json={})

    client = Togai("t", base_url="http://togai.test", transport=httpx.MockTransport(hang), retry=ONCE)
    sender = client.background(spool=tmp_path / "spool", flush_interval=60.0)
    returned: list[int] = []
    try:
        sender.track(togai_event(1))
        sender.close(timeout=0.0)
        assert sender._queue.kept == 1
        closer = threading.Thread(
            target=lambda: returned.append(sender.close(timeout=120.0).in_spool), daemon=True
        )
        closer.start()
        closer.join(BOUND)
        assert returned == [1], "the second close() is still waiting"
    finally:
        release.set()


def spool_depth(reader: InMemoryMetricReader) -> list[Any]:
    """The values of ``billing_events.spool.depth`` now, one per (provider, queue) point."""
    found: list[Any] = []
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "billing_events.spool.depth":
                    found.extend(point.value for point in metric.data.data_points)
    return found


def test_ctrl_c_in_close_does_not_leave_the_closed_sender_in_the_spool_depth_gauge(
    reader: InMemoryMetricReader, tmp_path: Path
) -> None:
    """Ctrl-C while ``close()`` drains a spool sender (its request hangs): the 3 events stay in the spool, and
    the application, handling the KeyboardInterrupt, starts a new sender on the same directory, which takes
    them over. ``billing_events.spool.depth`` then says 6: the closed sender is still counted (Ctrl-C skipped
    its ``metrics.unwatch``, and the gauge now reads the spool's row count, which a closed spool keeps). The
    user should see 3, the events that exist, as after a close() that was not interrupted."""
    release = threading.Event()

    def hang(request: httpx.Request) -> httpx.Response:
        release.wait(BOUND)
        return httpx.Response(200, json={})

    client = Togai("t", base_url="http://togai.test", transport=httpx.MockTransport(hang), retry=ONCE)
    directory = tmp_path / "spool"
    first = client.background(spool=directory, flush_interval=60.0)
    second = None
    try:
        for number in range(3):
            first.track(togai_event(number))
        [worker] = first._threads
        join = worker.join
        calls: list[float | None] = []

        def interrupted_join(timeout: float | None = None) -> None:
            calls.append(timeout)
            if len(calls) == 1:
                raise KeyboardInterrupt  # Ctrl-C lands while close() waits for the worker
            join(timeout)

        worker.join = interrupted_join  # type: ignore[method-assign]
        with pytest.raises(KeyboardInterrupt):
            first.close(timeout=60.0)
        assert first._queue.kept == 3
        second = client.background(spool=directory, flush_interval=60.0)
        assert second.stats.in_spool == 3  # took the kept events over
        assert sum(spool_depth(reader)) == 3, spool_depth(reader)
    finally:
        release.set()
        if second is not None:
            second.close(timeout=0.0)
