"""Regressions found in review: each test failed before its fix."""

from __future__ import annotations

import asyncio
import decimal
import json
import threading
from pathlib import Path

import httpx

from billing_events import AsyncTogai, OutcomeStatus, RetryPolicy, Togai, read_dead_letters

from .scripted import Scripted, accepted, togai_event

POLICY = RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.01)


def togai(server: Scripted, tmp_path: Path | None = None, **options: object) -> Togai:
    return Togai(
        "t",
        base_url="http://togai.local",
        transport=server.transport(),
        dead_letter_path=tmp_path / "dead.jsonl" if tmp_path else None,
        **{"retry": POLICY, **options},  # type: ignore[arg-type]
    )


def test_a_value_json_cannot_carry_is_rejected_and_the_rest_still_goes(tmp_path: Path) -> None:
    server = Scripted(default=accepted)
    odd = togai_event(3, dimensions={"region": {"a", "set"}})
    report = togai(server, tmp_path, max_batch_events=2).send(
        [togai_event(1), togai_event(2), odd, togai_event(4)]
    )
    assert [o.status for o in report] == [OutcomeStatus.DELIVERED] * 2 + [
        OutcomeStatus.REJECTED,
        OutcomeStatus.DELIVERED,
    ]
    assert (report.outcomes[2].reason or "").startswith("event.dimensions.region: a set is not JSON data")
    [letter] = read_dead_letters(tmp_path / "dead.jsonl")
    assert letter.key == report.outcomes[2].key
    assert "set" in json.dumps(letter.event)  # written as its repr, not lost


def test_track_never_raises_for_an_unserializable_event(tmp_path: Path) -> None:
    server = Scripted(default=accepted)
    with togai(server, tmp_path).background(flush_interval=0.01) as sender:
        sender.track(togai_event(1, accountId=decimal.Decimal("1.5")))
        sender.track(togai_event(2))
    assert (sender.stats.rejected, sender.stats.delivered) == (1, 1)
    assert [letter.status for letter in read_dead_letters(tmp_path / "dead.jsonl")] == ["rejected"]


def test_an_explicit_null_key_gets_a_generated_one() -> None:
    server = Scripted(default=accepted)
    report = togai(server, validate=False).send([togai_event(1, id=None)])
    [sent] = server.bodies()[0]["events"]
    assert isinstance(sent["id"], str)
    assert sent["id"] == report.outcomes[0].key


def test_a_207_whose_detail_does_not_fit_the_batch_is_unknown() -> None:
    outside = {"success": False, "details": {"rejectedEvents": [{"index": 7, "message": "?"}]}}
    empty = {"success": False, "details": {"rejectedEvents": []}}
    for body in (outside, empty):
        report = togai(Scripted(httpx.Response(207, json=body))).send([togai_event(1), togai_event(2)])
        assert {o.status for o in report} == {OutcomeStatus.UNKNOWN}


def test_a_400_on_a_batch_is_narrowed_down_to_the_bad_event() -> None:
    def refuses_whole(request: httpx.Request) -> httpx.Response:
        events = json.loads(request.content)["events"]
        if any(event["accountId"] == "bad" for event in events):
            return httpx.Response(400, json={"message": "no acceptable event"})
        return httpx.Response(202, json={"success": True})

    events = [togai_event(n, accountId="bad" if n == 2 else "ok") for n in range(4)]
    report = togai(Scripted(default=refuses_whole), validate=False).send(events)
    assert [o.status.value for o in report] == ["delivered", "delivered", "rejected", "delivered"]


def test_flush_waits_for_an_older_event_even_when_a_newer_one_settled_first() -> None:
    async def run() -> None:
        hold = asyncio.Event()
        first_arrived = asyncio.Event()

        async def answer(request: httpx.Request) -> httpx.Response:
            [event] = json.loads(request.content)["events"]
            if event["accountId"] == "slow":
                first_arrived.set()
                await hold.wait()
            return httpx.Response(202, json={"success": True})

        client = AsyncTogai(
            "t", base_url="http://togai.local", transport=httpx.MockTransport(answer), max_batch_events=1
        )
        async with client:
            sender = client.background(flush_interval=0.01, max_in_flight=2)
            sender.track(togai_event(1, accountId="slow"))
            await asyncio.wait_for(first_arrived.wait(), 10)
            flushing = asyncio.create_task(sender.flush(0.3))
            await asyncio.sleep(0)  # the flush has taken its mark
            sender.track(togai_event(2, accountId="fast"))
            assert await flushing is False  # the older, slow event is still out
            hold.set()
            assert await sender.flush(10) is True
            await sender.close()

    asyncio.run(run())


def test_no_request_starts_after_the_close_deadline() -> None:
    arrived = threading.Event()

    def busy(request: httpx.Request) -> httpx.Response:
        arrived.set()
        return httpx.Response(503, json={"message": "busy"}, headers={"Retry-After": "3"})

    server = Scripted(default=busy)
    client = togai(server, retry=RetryPolicy(max_attempts=5, initial_delay=0.001, max_retry_after=3))
    sender = client.background(flush_interval=0.01)
    sender.track(togai_event(1))
    assert arrived.wait(10)
    stats = sender.close(timeout=0.2)
    for worker in sender._threads:
        worker.join(10)
    assert len(server.requests) == 1
    assert stats.unknown == 1
