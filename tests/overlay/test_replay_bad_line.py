"""Item 13: replay sends every good dead letter and reports the line that is not one."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cli.support import togai_event
from hostile.server import Answer, HostileServer

from billing_events import AsyncTogai, OutcomeStatus, Report, RetryPolicy, Togai, partial_report

TOKEN = "replay-test-token-123456"


def written(days_ago: float = 0) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)).isoformat(timespec="milliseconds")


def dead_letter_file(path: Path, count: int) -> Path:
    lines = [
        orjson.dumps(
            {
                "provider": "togai",
                "key": f"k-{i}",
                "status": "unknown",
                "reason": "x",
                "event": togai_event(i, id=f"k-{i}"),
                "at": written(),
            }
        )
        for i in range(count)
    ]
    # A crash cut the last write short: half a line, no newline.
    path.write_bytes(b"\n".join(lines) + b"\n" + lines[0][:37])
    return path


@pytest.fixture
def hostile() -> object:
    server = HostileServer()
    server.start()
    yield server
    server.stop()


def test_replay_sends_every_good_letter_and_names_the_truncated_line(
    tmp_path: Path, hostile: HostileServer
) -> None:
    path = dead_letter_file(tmp_path / "dead.jsonl", 100)
    bad: list[Any] = []
    with Togai(TOKEN, base_url=hostile.url) as client:
        report = client.replay(path, on_bad_line=bad.append)
    assert sum(1 for outcome in report if outcome.delivered) == 100
    assert sorted(hostile.stored) == sorted(f"k-{i}" for i in range(100))
    assert [line.line for line in bad] == [101]
    assert "unexpected end" in bad[0].why or "EOF" in bad[0].why or "truncated" in bad[0].why


def test_async_replay_logs_the_bad_line_by_default(
    tmp_path: Path, hostile: HostileServer, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    path = dead_letter_file(tmp_path / "dead.jsonl", 10)

    async def run() -> int:
        async with AsyncTogai(TOKEN, base_url=hostile.url) as client:
            report = await client.replay(path)
            return sum(1 for outcome in report if outcome.delivered)

    assert asyncio.run(run()) == 10
    assert hostile.stored_count == 10
    assert any("dead.jsonl:11: not a dead letter" in record.getMessage() for record in caplog.records)


def test_a_togai_replay_leaves_out_unknown_letters_past_its_45_day_window(
    tmp_path: Path, hostile: HostileServer, caplog: pytest.LogCaptureFixture
) -> None:
    # Togai forgets an id after 45 days: an unknown event it stored back then would be billed twice.
    letters = [
        {"status": "unknown", "at": written(50)},
        {"status": "unknown", "at": written(10)},
        {"status": "failed", "at": written(50)},  # surely not stored: safe at any age
    ]
    path = held_back_letters(tmp_path / "dead.jsonl", letters)
    with Togai(TOKEN, base_url=hostile.url) as client:
        report = client.replay(path)
        assert sorted(hostile.stored) == ["k-1", "k-2"]
        # The letter held back keeps its place in the report: unknown, held back, and why.
        assert [(o.key, o.status.value, o.held_back) for o in report] == [
            ("k-0", "unknown", True),
            ("k-1", "delivered", False),
            ("k-2", "delivered", False),
        ]
        assert "unknown since" in (report[0].reason or "") and "resend_past_window=True" in (
            report[0].reason or ""
        )
        assert not report.ok and report.to_resend() == []
        assert any("k-0 unknown since" in record.getMessage() for record in caplog.records)

        forced = client.replay(path, resend_past_window=True)

    assert len(forced) == 3 and sorted(set(hostile.stored)) == ["k-0", "k-1", "k-2"]
    assert forced.ok and not any(outcome.held_back for outcome in forced)


def test_a_replay_names_the_letters_of_the_other_provider_it_leaves_out(
    tmp_path: Path, hostile: HostileServer, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "dead.jsonl"
    lago = {
        "provider": "lago",
        "key": "t-1",
        "status": "failed",
        "reason": "x",
        "event": {"transaction_id": "t-1"},
    }
    togai = {
        "provider": "togai",
        "key": "k-1",
        "status": "failed",
        "reason": "x",
        "event": togai_event(1, id="k-1"),
    }
    path.write_bytes(
        b"".join(orjson.dumps(letter, option=orjson.OPT_APPEND_NEWLINE) for letter in (lago, togai))
    )

    with Togai(TOKEN, base_url=hostile.url) as client:
        report = client.replay(path)

    assert len(report) == 1 and hostile.stored == ["k-1"]
    assert any("1 letters of another provider left out" in record.getMessage() for record in caplog.records)


def test_an_async_replay_keeps_held_back_letters_in_place_and_out_of_to_resend(
    tmp_path: Path, hostile: HostileServer
) -> None:
    # A caller that deletes the file once report.ok would have lost the letter held back.
    hostile.answer(Answer("error", status=503))
    letters = [
        {"status": "failed", "at": written(1)},
        {"status": "unknown", "at": written(60)},  # past Togai's window: held back
        {"status": "unknown", "at": written(2)},
    ]
    path = held_back_letters(tmp_path / "dead.jsonl", letters)

    async def run() -> Report:
        async with AsyncTogai(TOKEN, base_url=hostile.url, retry=RetryPolicy(max_attempts=1)) as client:
            return await client.replay(path)

    report = asyncio.run(run())
    assert [(o.key, o.held_back) for o in report] == [("k-0", False), ("k-1", True), ("k-2", False)]
    assert report.statuses[1] is OutcomeStatus.UNKNOWN and not report.ok
    # The two the replay sent (and a 503 left unknown) go again; the held-back one does not.
    assert [event["id"] for event in report.to_resend()] == ["k-0", "k-2"]
    assert sorted(hostile.stored) == ["k-0", "k-2"]


def held_back_letters(path: Path, letters: list[dict[str, Any]]) -> Path:
    """A Togai dead-letter file of ``letters``, each over a fresh unknown letter ``k-N``."""
    path.write_bytes(
        b"".join(
            orjson.dumps(
                {
                    "provider": "togai",
                    "key": f"k-{i}",
                    "status": "unknown",
                    "reason": "x",
                    "event": togai_event(i, id=f"k-{i}"),
                    "at": written(1),
                    **letter,
                },
                option=orjson.OPT_APPEND_NEWLINE,
            )
            for i, letter in enumerate(letters)
        )
    )
    return path


def stored_then(interrupt_on: int) -> tuple[list[str], Any]:
    """A Togai-like handler that stores each request, and raises KeyboardInterrupt on call ``interrupt_on``."""
    stored: list[str] = []
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == interrupt_on:
            raise KeyboardInterrupt
        stored.extend(event["id"] for event in orjson.loads(request.content)["events"])
        return httpx.Response(200, json={})

    return stored, handler


def test_a_held_back_letter_never_counts_as_delivered(tmp_path: Path) -> None:
    # A letter that says "delivered" is damaged (only undelivered events are dead-lettered); held back,
    # it was not delivered by this replay either, and a caller deleting the file once ok would lose it.
    path = held_back_letters(
        tmp_path / "dead.jsonl",
        [
            {"status": "delivered", "clipped": "the event's JSON was 5,242,900 bytes", "event": {}},
            {"status": "duplicate", "clipped": "the event's JSON was 5,242,900 bytes", "event": {}},
        ],
    )
    with Togai(TOKEN, base_url="http://127.0.0.1:9") as client:
        report = client.replay(path)
    assert [outcome.held_back for outcome in report] == [True, True]
    assert not any(status.delivered for status in report.statuses)
    assert not report.ok and report.counts[OutcomeStatus.UNKNOWN] == 2


def test_a_held_back_letters_reason_and_key_stay_short(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = held_back_letters(
        tmp_path / "dead.jsonl",
        [
            {"clipped": "Z" * 1_000_000, "event": {}},  # a damaged note
            {"key": list(range(100_000)), "at": written(60)},  # a key that is not a string, past the window
        ],
    )
    with (
        caplog.at_level(logging.WARNING, logger="billing_events"),
        Togai(TOKEN, base_url="http://127.0.0.1:9") as client,
    ):
        report = client.replay(path)
    assert [outcome.held_back for outcome in report] == [True, True]
    for outcome in report:
        assert len(outcome.key) < 1200 and len(outcome.reason or "") < 1200
        assert len(repr(outcome)) < 2400
    assert all(len(record.getMessage()) < 2400 for record in caplog.records)


def test_an_interrupted_replay_keeps_held_back_letters_at_their_places_in_its_partial_report(
    tmp_path: Path,
) -> None:
    path = held_back_letters(
        tmp_path / "dead.jsonl",
        [{"at": written(60)}, {}, {"at": written(60)}, {}, {}, {}, {"at": written(60)}],
    )
    stored, handler = stored_then(interrupt_on=2)
    client = Togai(
        TOKEN,
        base_url="http://togai.local",
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(max_attempts=1),
        max_batch_events=1,
    )
    with pytest.raises(KeyboardInterrupt) as caught:
        client.replay(path)
    report = partial_report(caught.value)
    assert report is not None and stored == ["k-1"]
    # It covers the first len(report) letters: k-3 was in flight, k-4 taken but not sent; k-6 is past the cut.
    # k-4's letter was unknown: this replay sent nothing of it, but the first send may have stored it.
    assert [(o.key, o.status.value, o.held_back) for o in report] == [
        ("k-0", "unknown", True),
        ("k-1", "delivered", False),
        ("k-2", "unknown", True),
        ("k-3", "unknown", False),
        ("k-4", "unknown", False),
    ]
    assert [event["id"] for event in report.to_resend()] == ["k-3", "k-4"]
    notes = [note for note in getattr(caught.value, "__notes__", []) if note.startswith("billing_events:")]
    assert notes == [f"billing_events: {report!r}; partial_report(exc) has the outcomes"]


def test_a_cancelled_async_replay_keeps_held_back_letters_in_its_partial_report(tmp_path: Path) -> None:
    path = held_back_letters(tmp_path / "dead.jsonl", [{"at": written(60)}, {}, {}])

    async def run() -> BaseException:
        second = asyncio.Event()
        calls = 0

        async def handler(request: httpx.Request) -> httpx.Response:
            nonlocal calls
            calls += 1
            if calls == 2:
                second.set()
                await asyncio.Event().wait()  # no answer: the caller cancels the replay
            return httpx.Response(200, json={})

        async with AsyncTogai(
            TOKEN,
            base_url="http://togai.local",
            transport=httpx.MockTransport(handler),
            retry=RetryPolicy(max_attempts=1),
            max_batch_events=1,
            max_in_flight=1,
        ) as client:
            task = asyncio.create_task(client.replay(path))
            await second.wait()
            task.cancel()
            try:
                await task
            except asyncio.CancelledError as exc:
                return exc
        raise AssertionError("the replay was not cancelled")

    report = partial_report(asyncio.run(run()))
    assert report is not None
    assert [(o.key, o.status.value, o.held_back) for o in report] == [
        ("k-0", "unknown", True),
        ("k-1", "delivered", False),
        ("k-2", "unknown", False),
    ]
