"""Review r28: claims of the README that the code did not keep (beyond the reviewers' own test files)."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path

import httpx
import orjson
import pytest

from billing_events import AsyncTogai, OutcomeStatus, RetryPolicy, Togai, read_dead_letters

from .scripted import togai_event


def _refusing(request: httpx.Request) -> httpx.Response:
    return httpx.Response(400, json={"message": "schema api_calls is not active"})


def _held_back_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "billing_events.outcomes" and record.levelno == logging.WARNING
    ]


@pytest.mark.parametrize("kind", ["client", "sender"])
def test_a_close_says_how_many_undelivered_events_the_warning_throttle_held_back(
    kind: str, caplog: pytest.LogCaptureFixture, fast_retry: RetryPolicy
) -> None:
    """README "Logging": at most one WARNING every 10 s, and the next one says how many events it held
    back. A client or sender closed within those 10 s never logged them: there was no next one."""
    caplog.set_level(logging.WARNING, logger="billing_events.outcomes")
    client = Togai(
        "t", base_url="http://togai.local", transport=httpx.MockTransport(_refusing), retry=fast_retry
    )
    with client:
        if kind == "client":
            for n in range(3):
                client.send([togai_event(n)])
        else:
            with client.background(flush_at_events=1) as sender:
                for n in range(3):
                    sender.track(togai_event(n))
                    assert sender.flush(10)
    warnings = _held_back_warnings(caplog)
    assert len(warnings) == 2, warnings
    assert "1 event not delivered" in warnings[0]
    assert warnings[1].startswith("togai: 2 more events not delivered since the last warning")


def test_an_async_client_says_it_at_close_too(
    caplog: pytest.LogCaptureFixture, fast_retry: RetryPolicy
) -> None:
    caplog.set_level(logging.WARNING, logger="billing_events.outcomes")

    async def refusing(request: httpx.Request) -> httpx.Response:
        return _refusing(request)

    async def run() -> None:
        async with AsyncTogai(
            "t", base_url="http://togai.local", transport=httpx.MockTransport(refusing), retry=fast_retry
        ) as client:
            for n in range(2):
                await client.send([togai_event(n)])

    asyncio.run(run())
    warnings = _held_back_warnings(caplog)
    assert [w.startswith("togai: 1 more event not delivered") for w in warnings] == [False, True], warnings


def _unknown_letter(path: Path, key: str, days_ago: float) -> None:
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)).isoformat(timespec="milliseconds")
    letter = {"provider": "togai", "key": key, "status": "unknown", "reason": "lost answer", "at": at}
    letter["event"] = togai_event(1, id=key)
    path.write_bytes(orjson.dumps(letter) + b"\n")


def test_a_library_replay_keeps_an_unknown_letter_unknown_and_its_first_moment(tmp_path: Path) -> None:
    """An unknown letter replayed into 429s only: this send surely stored nothing, but the first may have.
    The outcome stays unknown (failed letters replay at any age), and the new letter keeps the first
    send's moment, so a replay past Togai's 45 days holds it back."""
    letters, again = tmp_path / "dead.jsonl", tmp_path / "again.jsonl"
    _unknown_letter(letters, "evt-lost", days_ago=40)
    throttled = httpx.MockTransport(lambda request: httpx.Response(429, json={"message": "slow down"}))
    once = RetryPolicy(max_attempts=1)
    with Togai(
        "t", base_url="http://togai.local", transport=throttled, retry=once, dead_letter_path=again
    ) as client:
        outcome = client.replay(letters).outcomes[0]
    assert outcome.status is OutcomeStatus.UNKNOWN, outcome.reason
    assert "this send stored nothing, but one of" in (outcome.reason or "")
    (letter,) = read_dead_letters(again)
    assert (letter.status, letter.unsure_since) == ("unknown", orjson.loads(letters.read_bytes())["at"])

    # Ten days on, the first send is 50 days old: a replay of the new letter holds it back.
    _unknown_letter(letters, "evt-lost", days_ago=50)
    later = orjson.loads(again.read_bytes())
    later["unsure_since"] = orjson.loads(letters.read_bytes())["at"]
    again.write_bytes(orjson.dumps(later) + b"\n")
    sent: list[httpx.Request] = []
    with Togai(
        "t", base_url="http://togai.local", transport=httpx.MockTransport(sent.append), retry=once
    ) as client:
        held = client.replay(again).outcomes[0]
    assert (held.status, held.held_back, sent) == (OutcomeStatus.UNKNOWN, True, [])
