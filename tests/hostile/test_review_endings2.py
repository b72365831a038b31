"""Review (endings, second pass): the sync send() and the background senders, every way a call ends.

The xfail tests are defects (strict: they pass once fixed); the others pin cases that hold and that
no other test covers (Ctrl-C at each stage of a request on the real socket path)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpcore._backends.sync as sync_backend
import httpx
import pytest
from overlay.scripted import accepted, togai_event

from billing_events import (
    AsyncTogai,
    OutcomeStatus,
    QueueFullError,
    RetryPolicy,
    SenderClosedError,
    Togai,
    partial_report,
    read_dead_letters,
)
from hostile.conftest import TOKEN

FAST = RetryPolicy(max_attempts=2, deadline=5.0, initial_delay=0.001, max_delay=0.01)
HERE = Path(__file__).resolve().parent.parent


# -- Defects -------------------------------------------------------------------------------------


class ReaderBroke(Exception):
    pass


def test_events_failed_by_an_iterable_raising_are_counted_as_enqueued() -> None:
    client = Togai(TOKEN, base_url="http://togai.local", transport=httpx.MockTransport(accepted), retry=FAST)

    def source() -> Iterator[dict[str, Any]]:
        for n in range(3):
            yield togai_event(n)
        raise ReaderBroke("the caller's reader broke")

    with pytest.raises(ReaderBroke) as caught:
        client.send(source())
    report = partial_report(caught.value)
    assert report is not None
    assert [o.status for o in report] == [OutcomeStatus.FAILED] * 3  # holds: nothing was sent
    stats = client.stats
    # Three events were taken from the caller and each has an outcome: the counters must say so.
    assert (stats.enqueued, stats.failed) == (3, 3), stats


def test_an_event_the_chunker_held_at_ctrl_c_is_counted_once() -> None:
    calls = 0

    def second_request_interrupted(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt
        return accepted(request)

    client = Togai(
        TOKEN,
        base_url="http://togai.local",
        transport=httpx.MockTransport(second_request_interrupted),
        retry=FAST,
        max_batch_events=2,
    )
    with pytest.raises(KeyboardInterrupt) as caught:
        client.send([togai_event(n) for n in range(7)])
    report = partial_report(caught.value)
    assert report is not None
    # The fifth event was taken (it closed the second batch) and held for the third: it ends failed.
    assert [o.status for o in report] == [OutcomeStatus.DELIVERED] * 2 + [OutcomeStatus.UNKNOWN] * 2 + [
        OutcomeStatus.FAILED
    ]
    stats = client.stats
    assert (stats.enqueued, stats.settled) == (5, 5), stats
    client.send([togai_event(n, id=f"after-{n}") for n in range(3)])  # a send that ends normally adds its own
    assert (client.stats.enqueued, client.stats.settled) == (8, 8), client.stats


def test_the_async_send_counts_the_events_its_iterable_raising_failed() -> None:
    async def ok(request: httpx.Request) -> httpx.Response:
        return accepted(request)

    client = AsyncTogai(
        TOKEN,
        base_url="http://togai.local",
        transport=httpx.MockTransport(ok),
        retry=FAST,
        max_batch_events=2,
    )

    def source() -> Iterator[dict[str, Any]]:
        for n in range(5):
            yield togai_event(n)
        raise ReaderBroke("the caller's reader broke")

    with pytest.raises(ReaderBroke) as caught:
        asyncio.run(client.send(source()))
    report = partial_report(caught.value)
    assert report is not None
    assert [o.status for o in report].count(OutcomeStatus.FAILED) == 1  # the fifth, never in a batch
    stats = client.stats
    assert (stats.enqueued, stats.settled) == (5, 5), stats


def test_an_async_track_that_raises_has_not_queued_the_event() -> None:
    sent: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.extend(event["id"] for event in json.loads(request.content)["events"])
        return httpx.Response(202, json={"success": True})

    client = AsyncTogai(
        TOKEN, base_url="http://togai.local", transport=httpx.MockTransport(handler), retry=FAST
    )
    sender = client.background(flush_interval=3600)
    raised = False
    try:
        sender.track(togai_event(0, id="tracked-outside-a-loop"))
    except RuntimeError:
        raised = True  # the caller is told the event was not taken: it has no key to look for

    async def later() -> Any:
        sender.track(togai_event(1, id="tracked-in-the-loop"))
        return await sender.close(5.0)

    stats = asyncio.run(later())
    if raised:
        # A caller that got an exception (and no key) tracks the event again: it must not be sent twice.
        assert sent == ["tracked-in-the-loop"], sent
        assert stats.enqueued == 1, stats
    else:
        assert sorted(sent) == ["tracked-in-the-loop", "tracked-outside-a-loop"]


def _run_script(body: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(body)],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_forked_child_never_dead_letters_its_parents_async_events(tmp_path: Path) -> None:
    letters = tmp_path / "dead.jsonl"
    result = _run_script(
        """
        import asyncio, json, os, httpx
        from billing_events import AsyncTogai
        from overlay.scripted import togai_event

        async def ok(request):
            return httpx.Response(202, json={"success": True})

        async def main():
            client = AsyncTogai(os.environ["TOKEN"], base_url="http://togai.local",
                                transport=httpx.MockTransport(ok), dead_letter_path=os.environ["DEAD"])
            sender = client.background(flush_interval=3600)
            keys = [sender.track(togai_event(n)) for n in range(3)]
            pid = os.fork()
            if pid == 0:
                return None   # the child goes on with its own work and ends normally
            _, status = os.waitpid(pid, 0)
            stats = await sender.close(5)
            print(json.dumps({"child": status, "delivered": stats.delivered, "keys": keys}))

        asyncio.run(main())
        """,
        TOKEN=TOKEN,
        DEAD=str(letters),
    )
    assert result.returncode == 0, result.stderr
    parent = json.loads(result.stdout)
    assert (parent["child"], parent["delivered"]) == (0, 3)
    # The parent delivered all three: no dead letter may say otherwise (a child that never had them
    # wrote "failed", i.e. "the provider surely does not have it").
    written = (
        [(letter.key, letter.status) for letter in read_dead_letters(letters)] if letters.exists() else []
    )
    assert written == [], written


def test_an_async_track_outside_a_loop_writes_nothing_to_the_spool(tmp_path: Path) -> None:
    client = AsyncTogai(
        TOKEN, base_url="http://togai.local", transport=httpx.MockTransport(accepted), retry=FAST
    )
    sender = client.background(flush_interval=3600, spool=tmp_path)
    with pytest.raises(RuntimeError):
        sender.track(togai_event(0))
    stats = sender.stats
    assert (stats.enqueued, stats.in_queue, stats.in_spool) == (0, 0, 0), stats
    stats = asyncio.run(sender.close(5.0))
    assert (stats.enqueued, stats.settled) == (0, 0), stats


def test_a_forked_child_never_touches_its_parents_async_spool_or_connections(tmp_path: Path) -> None:
    letters = tmp_path / "dead.jsonl"
    result = _run_script(
        """
        import asyncio, json, os, httpx
        from billing_events import AsyncTogai
        from overlay.scripted import togai_event

        async def ok(request):
            return httpx.Response(202, json={"success": True})

        async def main():
            client = AsyncTogai(os.environ["TOKEN"], base_url="http://togai.local",
                                transport=httpx.MockTransport(ok), dead_letter_path=os.environ["DEAD"])
            sender = client.background(flush_interval=3600, spool=os.environ["SPOOL"])
            keys = [sender.track(togai_event(n)) for n in range(3)]
            parent_http, parent_queue = client.http, sender._queue
            pid = os.fork()
            if pid == 0:
                stats = sender.stats
                child = {"stats": [stats.enqueued, stats.in_queue, stats.in_spool],
                         "own_pool": client.http is not parent_http, "own_queue": sender._queue is not parent_queue}
                with open(os.environ["CHILD_OUT"], "w") as out:
                    json.dump(child, out)
                return None
            _, status = os.waitpid(pid, 0)
            stats = await sender.close(5)
            print(json.dumps({"child": status, "delivered": stats.delivered, "in_spool": stats.in_spool}))

        asyncio.run(main())
        """,
        TOKEN=TOKEN,
        DEAD=str(letters),
        SPOOL=str(tmp_path / "spool"),
        CHILD_OUT=str(tmp_path / "child.json"),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"child": 0, "delivered": 3, "in_spool": 0}
    child = json.loads((tmp_path / "child.json").read_text())
    assert child == {"stats": [0, 0, 0], "own_pool": True, "own_queue": True}
    assert not letters.exists() or list(read_dead_letters(letters)) == []


# -- What holds: Ctrl-C at each stage of a request on the real socket path ---------------------


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A server that accepts connections and reads what comes, never answering."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener.getsockname()[1]
    listener.close()


STAGES = {
    # Before a byte left: the connect itself.
    "connect": (sync_backend.SyncBackend, "connect_tcp", OutcomeStatus.FAILED),
    # The request's write: some of it may have left.
    "write": (sync_backend.SyncStream, "write", OutcomeStatus.UNKNOWN),
    # The request went out whole; the answer was being read.
    "read": (sync_backend.SyncStream, "read", OutcomeStatus.UNKNOWN),
}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_ctrl_c_at_each_stage_of_a_real_request_ends_each_event_by_what_left(
    stage: str, silent_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, name, expected = STAGES[stage]
    original = getattr(owner, name)

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread() is threading.main_thread():
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, interrupted)
    letters = tmp_path / "dead.jsonl"
    client = Togai(
        TOKEN, base_url=f"http://127.0.0.1:{silent_port}", retry=FAST, timeout=5, dead_letter_path=letters
    )
    with pytest.raises(KeyboardInterrupt) as caught:
        client.send([togai_event(n, id=f"evt-{n}") for n in range(2)])
    report = partial_report(caught.value)
    assert report is not None
    assert [o.status for o in report] == [expected] * 2
    assert [(letter.key, letter.status) for letter in read_dead_letters(letters)] == [
        ("evt-0", expected.value),
        ("evt-1", expected.value),
    ]
    stats = client.stats
    assert (stats.enqueued, stats.failed + stats.unknown) == (2, 2)
    client.close()


# -- What holds: many blocked track() calls and a close() --------------------------------------


def test_many_threads_blocked_on_a_full_queue_all_return_and_every_accepted_event_ends_once(
    tmp_path: Path,
) -> None:
    release = threading.Event()
    arrived = threading.Event()

    def stuck(request: httpx.Request) -> httpx.Response:
        arrived.set()
        if not release.wait(10):
            raise httpx.ReadTimeout("never released")
        return httpx.Response(202, json={"success": True})

    client = Togai(
        TOKEN,
        base_url="http://togai.local",
        transport=httpx.MockTransport(stuck),
        retry=FAST,
        dead_letter_path=tmp_path / "dead.jsonl",
    )
    sender = client.background(
        flush_interval=0.01, flush_at_events=1, max_queue_events=2, on_full="block", block_timeout=30
    )
    sender.track(togai_event(0))
    assert arrived.wait(10)  # the worker is stuck in its request
    outcomes: list[str] = []
    lock = threading.Lock()
    started = threading.Barrier(9)

    def produce(n: int) -> None:
        started.wait()
        try:
            sender.track(togai_event(n))
            result = "accepted"
        except (QueueFullError, SenderClosedError) as exc:
            result = type(exc).__name__
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    started.wait()
    stats = sender.close(0.3)
    for thread in threads:
        thread.join(10)
    assert not any(thread.is_alive() for thread in threads)  # none waits its full block_timeout
    accepted_count = outcomes.count("accepted")
    assert len(outcomes) == 8 and accepted_count <= 2
    release.set()
    for worker in sender._threads:
        worker.join(10)
    final = sender.stats
    assert final.enqueued == 1 + accepted_count
    assert final.settled == final.enqueued, final
    assert stats.unknown == 1  # the one in flight at the deadline
