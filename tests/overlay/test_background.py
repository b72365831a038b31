"""The background sender: queue bounds and policies, flush and close deadlines, threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from billing_events import (
    ConfigurationError,
    OutcomeStatus,
    QueueFullError,
    RetryPolicy,
    SenderClosedError,
    Togai,
    read_dead_letters,
)
from billing_events.background import BackgroundSender
from billing_events.outcomes import Outcome

from .scripted import Scripted, accepted, togai_event


class Gate:
    """A server that holds every request until the test opens the gate."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.arrived = threading.Event()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.arrived.set()
        if not self.open.wait(30):
            raise httpx.ReadTimeout("gate never opened")
        return httpx.Response(202, json={"success": True})


def client(server: Scripted, tmp_path: Path | None = None, **options: object) -> Togai:
    dead = tmp_path / "dead.jsonl" if tmp_path else None
    return Togai(
        "t",
        base_url="http://togai.local",
        transport=server.transport(),
        retry=RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.01),
        dead_letter_path=dead,
        **options,  # type: ignore[arg-type]
    )


def test_track_then_flush_delivers_everything() -> None:
    server = Scripted(default=accepted)
    sender = client(server).background(flush_interval=30)
    keys = [sender.track(togai_event(n)) for n in range(1234)]
    assert sender.flush(10)
    sent = [key for batch in server.sent_keys("id") for key in batch]
    assert sorted(sent) == sorted(keys)
    assert len(set(keys)) == 1234
    stats = sender.stats
    assert (stats.enqueued, stats.delivered, stats.in_queue) == (1234, 1234, 0)
    sender.close()


def test_a_full_batch_is_sent_without_waiting_for_the_interval() -> None:
    sent = threading.Event()

    def answer(request: httpx.Request) -> httpx.Response:
        sent.set()
        return accepted(request)

    server = Scripted(default=answer)
    sender = client(server).background(flush_interval=3600)
    for n in range(500):
        sender.track(togai_event(n))
    # The 500th event fills a batch and wakes the worker; the hour-long interval never comes into it.
    assert sent.wait(10)
    assert len(server.sent_keys("id")[0]) == 500
    sender.close()


def test_interval_flush_sends_a_partial_batch() -> None:
    server = Scripted(default=accepted)
    delivered = threading.Event()
    sender = client(server).background(flush_interval=0.05, on_outcome=lambda o: delivered.set())
    sender.track(togai_event(1))
    assert delivered.wait(10)
    assert sender.stats.delivered == 1
    sender.close()


def test_drop_policy_counts_dead_letters_and_calls_back(tmp_path: Path) -> None:
    gate = Gate()
    dropped: list[Outcome] = []
    sender = client(Scripted(default=gate), tmp_path).background(
        max_queue_events=10, on_full="drop", on_drop=dropped.append, flush_interval=0.01
    )
    sender.track(togai_event(0))
    assert gate.arrived.wait(10)  # the worker now holds one event in flight
    keys = [sender.track(togai_event(n)) for n in range(1, 16)]
    assert len(dropped) == 5
    assert [o.key for o in dropped] == keys[10:]
    assert all(o.status is OutcomeStatus.DROPPED for o in dropped)
    assert sender.stats.dropped == 5
    letters = list(read_dead_letters(tmp_path / "dead.jsonl"))
    assert [letter.key for letter in letters] == keys[10:]
    gate.open.set()
    sender.close(10)
    stats = sender.stats
    assert stats.delivered == 11 and stats.dropped == 5 and stats.enqueued == 11


def test_block_policy_waits_then_raises_and_the_caller_keeps_the_event() -> None:
    gate = Gate()
    sender = client(Scripted(default=gate)).background(
        max_queue_events=3, on_full="block", block_timeout=0.05, flush_interval=0.01
    )
    sender.track(togai_event(0))
    assert gate.arrived.wait(10)
    for n in range(1, 4):
        sender.track(togai_event(n))
    with pytest.raises(QueueFullError, match="stayed full"):
        sender.track(togai_event(4))
    assert sender.stats.dropped == 0
    gate.open.set()
    assert sender.flush(10)
    assert sender.stats.delivered == 4


def test_block_policy_proceeds_when_room_appears() -> None:
    gate = Gate()
    sender = client(Scripted(default=gate)).background(
        max_queue_events=2, on_full="block", block_timeout=10, flush_interval=0.01
    )
    sender.track(togai_event(0))
    assert gate.arrived.wait(10)
    sender.track(togai_event(1))
    sender.track(togai_event(2))
    threading.Timer(0.05, gate.open.set).start()
    sender.track(togai_event(3))  # blocks until the worker takes a batch
    assert sender.flush(10)
    assert sender.stats.delivered == 4
    sender.close()


def test_the_queue_is_bounded_by_bytes() -> None:
    gate = Gate()
    sender = client(Scripted(default=gate), max_batch_bytes=4096).background(
        max_queue_events=1_000_000, max_queue_bytes=4096, on_full="drop", flush_interval=0.01
    )
    sender.track(togai_event(0))
    assert gate.arrived.wait(10)
    for n in range(1, 200):
        sender.track(togai_event(n))
    stats = sender.stats
    assert stats.dropped > 0
    assert stats.in_queue * 150 <= 4096  # every queued event is well over 150 bytes
    gate.open.set()
    sender.close(10)


def test_flush_returns_false_at_its_deadline_and_true_once_delivered() -> None:
    gate = Gate()
    sender = client(Scripted(default=gate)).background(flush_interval=0.01)
    sender.track(togai_event(1))
    assert sender.flush(0.05) is False
    gate.open.set()
    assert sender.flush(10) is True
    sender.close()


def test_close_meets_its_deadline_and_accounts_for_every_event(tmp_path: Path) -> None:
    gate = Gate()
    sender = client(Scripted(default=gate), tmp_path).background(flush_interval=0.01)
    sender.track(togai_event(0))
    assert gate.arrived.wait(10)
    for n in range(1, 20):
        sender.track(togai_event(n))
    started = time.monotonic()
    stats = sender.close(timeout=0.2)
    assert time.monotonic() - started < 5
    assert stats.unknown == 1  # in flight when the deadline passed
    assert stats.failed == 19  # still queued
    assert stats.settled == stats.enqueued == 20
    statuses = sorted(letter.status for letter in read_dead_letters(tmp_path / "dead.jsonl"))
    assert statuses == ["failed"] * 19 + ["unknown"]
    gate.open.set()
    # Once the worker has handled the late answer of the abandoned request, it has not counted it twice.
    for worker in sender._threads:
        worker.join(10)
    assert sender.stats.settled == 20
    with pytest.raises(SenderClosedError):
        sender.track(togai_event(99))


class Throttled:
    """A server that refuses every request with a 429 (nothing stored) and says when it has answered."""

    def __init__(self, status: int = 429) -> None:
        self.status = status
        self.answered = threading.Event()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.answered.set()
        return httpx.Response(self.status, headers={"retry-after": "60"}, json={"message": "slow down"})


# A long wait between attempts: the close deadline finds the batch waiting for its next attempt.
PATIENT = RetryPolicy(max_attempts=5, initial_delay=60, max_delay=60, max_retry_after=60)


def patient_sender(handler: Callable[[httpx.Request], httpx.Response], tmp_path: Path) -> BackgroundSender:
    api = Togai(
        "t",
        base_url="http://togai.local",
        transport=httpx.MockTransport(handler),
        retry=PATIENT,
        dead_letter_path=tmp_path / "dead.jsonl",
        max_requests_per_second=None,
    )
    return api.background(flush_interval=0.01)


@pytest.mark.parametrize(("status", "ending"), [(429, "failed"), (503, "unknown")])
def test_a_close_deadline_between_attempts_ends_events_by_what_their_attempts_proved(
    tmp_path: Path, status: int, ending: str
) -> None:
    """After a 429 nothing was stored, so the events are failed; after a 503 they may have been: unknown."""
    server = Throttled(status)
    sender = patient_sender(server, tmp_path)
    for n in range(3):
        sender.track(togai_event(n))
    assert server.answered.wait(10)  # the worker now waits out the Retry-After before its next attempt
    stats = sender.close(timeout=0.2)
    assert (stats.failed, stats.unknown) == ((3, 0) if ending == "failed" else (0, 3))
    assert [letter.status for letter in read_dead_letters(tmp_path / "dead.jsonl")] == [ending] * 3
    for worker in sender._threads:
        worker.join(10)
    assert sender.stats.settled == 3  # the worker's own wrap-up after the deadline is not counted again


def test_no_request_leaves_after_the_close_deadline_even_within_an_attempt(tmp_path: Path) -> None:
    """A 413 answered after the deadline asks for two halves at once: neither may be sent."""
    requests: list[httpx.Request] = []
    closed = threading.Event()

    def too_large_after_the_deadline(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        assert closed.wait(10)  # answered once close() has returned: its deadline has passed
        return httpx.Response(413, text="too large")

    sender = patient_sender(too_large_after_the_deadline, tmp_path)
    sender.track(togai_event(0))
    sender.track(togai_event(1))
    stats = sender.close(timeout=0.2)
    closed.set()
    assert stats.unknown == 2  # in flight at the deadline
    for worker in sender._threads:
        worker.join(10)
    assert len(requests) == 1
    assert sender.stats.settled == 2


def test_context_manager_drains_on_exit() -> None:
    server = Scripted(default=accepted)
    with client(server).background(flush_interval=3600) as sender:
        for n in range(10):
            sender.track(togai_event(n))
    assert sender.stats.delivered == 10
    assert sum(len(keys) for keys in server.sent_keys("id")) == 10


def test_many_threads_tracking_at_once_lose_nothing() -> None:
    server = Scripted(default=accepted)
    sender = client(server).background(flush_interval=0.01, workers=3)
    keys: list[list[str]] = [[] for _ in range(8)]

    def produce(slot: int) -> None:
        for n in range(500):
            keys[slot].append(sender.track(togai_event(n)))

    threads = [threading.Thread(target=produce, args=(slot,)) for slot in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sender.flush(20)
    tracked = sorted(key for chunk in keys for key in chunk)
    sent = sorted(key for batch in server.sent_keys("id") for key in batch)
    assert tracked == sent
    assert len(set(tracked)) == 4000
    sender.close()


def test_an_invalid_event_is_rejected_on_track_without_raising(tmp_path: Path) -> None:
    server = Scripted(default=accepted)
    with client(server, tmp_path).background(flush_interval=0.01) as sender:
        key = sender.track(togai_event(1, accountId="x" * 600))
        sender.track(togai_event(2))
    assert sender.stats.rejected == 1 and sender.stats.delivered == 1
    [letter] = read_dead_letters(tmp_path / "dead.jsonl")
    assert letter.key == key
    assert letter.reason is not None and letter.reason.startswith("event.accountId:")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("max_queue_events", 0, "max_queue_events: must be an integer >= 1"),
        ("max_queue_bytes", 10, "max_queue_bytes: must be at least one request body"),
        ("on_full", "wait", "on_full: must be 'block' or 'drop'"),
        ("flush_interval", 0, "flush_interval: must be a positive"),
        ("workers", 0, "workers: must be between 1 and 64"),
    ],
)
def test_bad_sender_options_name_the_field(option: str, value: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        client(Scripted(default=accepted)).background(**{option: value})


def test_a_second_concurrent_close_waits_for_the_first() -> None:
    gate = Gate()
    sender = client(Scripted(default=gate)).background(flush_interval=0.01)
    tracked = [sender.track(togai_event(n)) for n in range(10)]
    assert gate.arrived.wait(10)  # the worker holds a request in flight
    first = threading.Thread(target=sender.close, args=(30,))
    first.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # until the first close() refuses new events
        try:
            tracked.append(sender.track(togai_event(len(tracked))))
        except SenderClosedError:
            break
    opener = threading.Timer(0.05, gate.open.set)  # opens the gate while the second close() waits
    opener.start()
    stats = sender.close(30)
    assert (stats.delivered, stats.in_queue) == (len(tracked), 0)
    first.join(30)
    opener.join()


def test_a_track_blocked_on_a_full_queue_raises_sender_closed_when_close_comes() -> None:
    gate = Gate()
    sender = client(Scripted(default=gate)).background(
        max_queue_events=2, on_full="block", block_timeout=30, flush_interval=0.01
    )
    sender.track(togai_event(0))
    assert gate.arrived.wait(10)  # the worker holds that one in flight; the next two fill the queue
    sender.track(togai_event(1))
    sender.track(togai_event(2))
    waiting = threading.Event()
    wait = sender._changed.wait

    def watched_wait(timeout: float | None = None) -> bool:
        waiting.set()
        return wait(timeout)

    sender._changed.wait = watched_wait  # type: ignore[method-assign]
    raised: list[BaseException] = []

    def blocked_track() -> None:
        try:
            sender.track(togai_event(3))
        except BaseException as exc:
            raised.append(exc)

    tracker = threading.Thread(target=blocked_track)
    tracker.start()
    assert waiting.wait(10)  # the tracker waits for room, the lock released
    closer = threading.Thread(target=sender.close, args=(10,))
    closer.start()
    tracker.join(10)
    gate.open.set()
    closer.join(10)
    # The queue did not stay full for 30 s: the sender closed under the caller, who is told so.
    assert [type(exc) for exc in raised] == [SenderClosedError]
    assert sender.stats.delivered == 3 and sender.stats.dropped == 0


def test_ctrl_c_just_after_the_queue_took_an_event_leaves_its_byte_bound_exact() -> None:
    """An interrupt comes at a call: the one after the append must find the event's bytes counted."""
    from collections import deque

    from billing_events.queueing import ITEM_OVERHEAD, EventQueue

    class InterruptedAppend(deque[bytes]):
        def append(self, item: bytes) -> None:
            super().append(item)
            raise KeyboardInterrupt

    payload = b'{"n":1}'
    queue = EventQueue(
        Togai("token", base_url="https://togai.example/api").rules, 100, 10 * (len(payload) + ITEM_OVERHEAD)
    )
    queue._items = InterruptedAppend()
    with pytest.raises(KeyboardInterrupt):
        queue.offer(payload)
    queue._items = deque(queue._items)
    held = len(queue._items) + sum(1 for _ in range(20) if queue.offer(payload))
    assert held == 10
