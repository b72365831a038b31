"""The asyncio background sender: same contract as the thread sender, on one event loop."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import httpx
import pytest

from billing_events import (
    AsyncBackgroundSender,
    AsyncTogai,
    OutcomeStatus,
    QueueFullError,
    RetryPolicy,
    SenderClosedError,
    read_dead_letters,
)

from .scripted import togai_event

POLICY = RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.01)


class AsyncGate:
    """Holds every request until the test opens the gate; counts the requests in flight."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.arrived = asyncio.Event()
        self.in_flight = 0
        self.most_in_flight = 0
        self.keys: list[str] = []

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.arrived.set()
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.open.wait()
        finally:
            self.in_flight -= 1
        self.keys += [event["id"] for event in __import__("json").loads(request.content)["events"]]
        return httpx.Response(202, json={"success": True})


def client(gate: AsyncGate, tmp_path: Path | None = None, **options: object) -> AsyncTogai:
    return AsyncTogai(
        "t",
        base_url="http://togai.local",
        transport=httpx.MockTransport(gate.handle),
        retry=POLICY,
        dead_letter_path=tmp_path / "dead.jsonl" if tmp_path else None,
        **options,  # type: ignore[arg-type]
    )


def test_track_flush_and_requests_in_flight() -> None:
    async def run() -> None:
        gate = AsyncGate()
        async with client(gate, max_batch_events=10) as togai:
            sender = togai.background(flush_interval=0.01, max_in_flight=4)
            keys = [sender.track(togai_event(n)) for n in range(100)]
            assert await sender.flush(0.05) is False  # the gate holds every request
            assert gate.most_in_flight == 4
            gate.open.set()
            assert await sender.flush(10) is True
            assert sorted(gate.keys) == sorted(keys)
            stats = await sender.close()
            assert (stats.enqueued, stats.delivered, stats.in_queue) == (100, 100, 0)

    asyncio.run(run())


def test_drop_policy_dead_letters_and_counts(tmp_path: Path) -> None:
    async def run() -> None:
        gate = AsyncGate()
        dropped: list[str] = []
        async with client(gate, tmp_path) as togai:
            sender = togai.background(
                max_queue_events=5,
                on_full="drop",
                on_drop=lambda o: dropped.append(o.key),
                flush_interval=3600,
            )
            keys = [sender.track(togai_event(n)) for n in range(8)]
            assert dropped == keys[5:]
            gate.open.set()
            stats = await sender.close(10)
            assert (stats.delivered, stats.dropped) == (5, 3)
        assert [letter.key for letter in read_dead_letters(tmp_path / "dead.jsonl")] == keys[5:]

    asyncio.run(run())


def test_block_policy_raises_at_once_and_atrack_waits_for_room() -> None:
    async def run() -> None:
        gate = AsyncGate()
        async with client(gate) as togai:
            sender = togai.background(
                max_queue_events=2, on_full="block", block_timeout=5, flush_interval=3600, max_in_flight=1
            )
            sender.track(togai_event(0))
            sender.track(togai_event(1))
            # The worker's one lane now holds those two, stopped at the gate: nothing more leaves the queue.
            await asyncio.wait_for(gate.arrived.wait(), 10)
            sender.track(togai_event(2))
            sender.track(togai_event(3))
            with pytest.raises(QueueFullError):
                sender.track(togai_event(4))
            waiting = asyncio.create_task(sender.atrack(togai_event(5)))
            await asyncio.sleep(0)
            assert not waiting.done()
            gate.open.set()  # the lane is freed and takes the queued batch, which makes room
            await asyncio.wait_for(waiting, 10)
            assert await sender.flush(10)
            assert sender.stats.delivered == 5
            await sender.close()

    asyncio.run(run())


def test_close_deadline_accounts_for_every_event(tmp_path: Path) -> None:
    async def run() -> None:
        gate = AsyncGate()
        async with client(gate, tmp_path, max_batch_events=5) as togai:
            sender = togai.background(flush_interval=0.01, max_in_flight=1)
            for n in range(20):
                sender.track(togai_event(n))
            await asyncio.wait_for(gate.arrived.wait(), 10)  # one batch is now in flight
            stats = await sender.close(timeout=0.1)
            assert stats.unknown == 5  # the one batch in flight
            assert stats.failed == 15
            assert stats.settled == stats.enqueued == 20
            with pytest.raises(SenderClosedError):
                sender.track(togai_event(99))
        statuses = sorted(letter.status for letter in read_dead_letters(tmp_path / "dead.jsonl"))
        assert statuses == ["failed"] * 15 + ["unknown"] * 5

    asyncio.run(run())


@pytest.mark.parametrize(("status", "ending"), [(429, "failed"), (503, "unknown")])
def test_a_close_deadline_between_attempts_ends_events_by_what_their_attempts_proved(
    tmp_path: Path, status: int, ending: str
) -> None:
    """After a 429 nothing was stored, so the events are failed; after a 503 they may have been: unknown."""

    async def run() -> None:
        answered = asyncio.Event()

        async def refuse(request: httpx.Request) -> httpx.Response:
            answered.set()
            return httpx.Response(status, headers={"retry-after": "60"}, json={"message": "slow down"})

        patient = RetryPolicy(max_attempts=5, initial_delay=60, max_delay=60, max_retry_after=60)
        async with AsyncTogai(
            "t",
            base_url="http://togai.local",
            transport=httpx.MockTransport(refuse),
            retry=patient,
            dead_letter_path=tmp_path / "dead.jsonl",
            max_requests_per_second=None,
        ) as togai:
            sender = togai.background(flush_interval=0.01)
            for n in range(3):
                sender.track(togai_event(n))
            await asyncio.wait_for(answered.wait(), 10)  # the lane now waits out the Retry-After
            stats = await sender.close(timeout=0.2)
            assert (stats.failed, stats.unknown) == ((3, 0) if ending == "failed" else (0, 3))
        assert [letter.status for letter in read_dead_letters(tmp_path / "dead.jsonl")] == [ending] * 3

    asyncio.run(run())


def test_invalid_event_is_rejected_without_raising() -> None:
    async def run() -> None:
        gate = AsyncGate()
        gate.open.set()
        async with client(gate) as togai, togai.background(flush_interval=0.01) as sender:
            sender.track({"schemaName": "x"})
            sender.track(togai_event(1))
        assert sender.stats.rejected == 1
        assert sender.stats.delivered == 1
        assert OutcomeStatus.REJECTED.value == "rejected"

    asyncio.run(run())


class HoldAfter(AsyncGate):
    """Answers the first ``answered`` requests, then holds every later one until the gate opens."""

    def __init__(self, answered: int) -> None:
        super().__init__()
        self.answered = answered
        self.requests = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.requests <= self.answered:
            return httpx.Response(202, json={"success": True})
        return await super().handle(request)


def dead_statuses(path: Path) -> dict[str, int]:
    statuses: dict[str, int] = {}
    for letter in read_dead_letters(path) if path.exists() else []:
        statuses[letter.status] = statuses.get(letter.status, 0) + 1
    return statuses


def test_a_cancelled_close_dead_letters_the_rest_and_a_second_close_completes(tmp_path: Path) -> None:
    async def run() -> None:
        gate = HoldAfter(answered=24)  # 24 batches of 50 delivered, the 25th held in flight
        togai = client(gate, tmp_path, max_batch_events=50)
        sender = togai.background(flush_interval=3600, max_in_flight=1)
        for n in range(3000):
            sender.track(togai_event(n))
        await asyncio.wait_for(gate.arrived.wait(), 10)
        with pytest.raises(TimeoutError):  # the cancellation reaches the caller
            await asyncio.wait_for(sender.close(30), 0.05)
        assert dead_statuses(tmp_path / "dead.jsonl") == {"failed": 1750, "unknown": 50}
        stats = await sender.close()
        assert (stats.delivered, stats.failed, stats.unknown, stats.in_queue) == (1200, 1750, 50, 0)
        assert stats.settled == stats.enqueued == 3000
        await togai.aclose()

    asyncio.run(run())


def test_a_second_concurrent_close_waits_for_the_first() -> None:
    async def run() -> None:
        gate = AsyncGate()
        async with client(gate, max_batch_events=50) as togai:
            sender = togai.background(flush_interval=3600, max_in_flight=2)
            for n in range(500):
                sender.track(togai_event(n))
            first = asyncio.create_task(sender.close(30))
            second = asyncio.create_task(sender.close(30))
            await asyncio.wait_for(gate.arrived.wait(), 10)  # both closes are now waiting
            assert not second.done()
            gate.open.set()
            for stats in await asyncio.gather(second, first):
                assert (stats.delivered, stats.in_queue) == (500, 0)

    asyncio.run(run())


def test_a_sender_never_closed_dead_letters_when_its_loop_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def run() -> AsyncBackgroundSender:
        gate = AsyncGate()  # never opens: every request stays in flight
        sender = client(gate, tmp_path, max_batch_events=50).background(flush_interval=3600, max_in_flight=4)
        for n in range(1200):
            sender.track(togai_event(n))
        await asyncio.wait_for(gate.arrived.wait(), 10)
        return sender  # asyncio.run() now cancels the sender's tasks: nobody closed it

    with pytest.warns(ResourceWarning, match="never closed"):
        sender = asyncio.run(run())
    assert dead_statuses(tmp_path / "dead.jsonl") == {"failed": 1000, "unknown": 200}
    assert sender.stats.settled == 1200
    assert "1200 events not sent: the sender was never closed" in caplog.text
    with pytest.raises(SenderClosedError):
        sender.track(togai_event(0))


# The closed loop never ran the sender's inner wait: Python says so when it is collected.
@pytest.mark.filterwarnings("ignore:coroutine 'Event.wait' was never awaited:RuntimeWarning")
def test_a_sender_never_closed_dead_letters_when_it_is_collected(tmp_path: Path) -> None:
    async def track() -> None:
        sender = client(AsyncGate(), tmp_path).background(flush_interval=3600)
        for n in range(300):
            sender.track(togai_event(n))  # queued; its task never gets to run

    loop = asyncio.new_event_loop()
    loop.run_until_complete(track())
    loop.close()  # without cancelling the sender's task, as code before asyncio.run() often does
    with pytest.warns(ResourceWarning, match="300 events"):
        gc.collect()
    assert dead_statuses(tmp_path / "dead.jsonl") == {"failed": 300}
