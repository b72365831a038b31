"""Review (hostile), a second reading of round 28's later changes: the 45-day window carried across
replays (``unsure_since``, ``OutcomeSink.with_earlier``) and the Redis budget's bounded calls.

The first tests are defects it found (each failed before its fix); the others pin what holds.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from overlay.scripted import Scripted, accepted
from ratelimits.test_review_pacing import FakeRedis, booked, bulk

from billing_events import AsyncTogai, OutcomeStatus, Report, RetryPolicy, Togai, read_dead_letters
from billing_events.budgets import open_budget
from cli.conftest import Mock
from cli.support import RunCli, SigintOnCall, make_event, read_jsonl, report_of, wrapped_sender, write_jsonl

ONE_TRY = RetryPolicy(max_attempts=1)
UNKNOWN = OutcomeStatus.UNKNOWN


def _at(days_ago: float) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)).isoformat(timespec="milliseconds")


def _unknown(key: str, days_ago: float) -> dict[str, Any]:
    """An ``unknown`` Togai letter written ``days_ago`` (no ``unsure_since``: its first send was then)."""
    event = make_event("togai", 1, id=key)
    return {
        "provider": "togai",
        "key": key,
        "status": "unknown",
        "reason": "lost",
        "event": event,
        "at": _at(days_ago),
    }


def _throttled() -> httpx.MockTransport:
    """Every request answered 429: a replay's own send surely stores nothing."""
    return httpx.MockTransport(lambda request: httpx.Response(429, json={"message": "slow down"}))


def _replay_into_429s(dead: Path, again: Path) -> list[Any]:
    with Togai(
        "t", base_url="http://togai.local", transport=_throttled(), retry=ONE_TRY, dead_letter_path=again
    ) as client:
        return list(client.replay(dead).outcomes)


# --- the 45-day window: a key that is in a dead-letter file twice ------------------------------------------
# The same event is dead-lettered twice whenever it was sent twice (the app's own re-send, two runs
# appending to one dead_letter_path, files put together by hand). README: "The window runs from the first
# send that may have stored the event"; "a replay that leaves it unknown again writes the new letter with the
# same unsure_since".


def test_a_letter_repeated_in_one_replay_keeps_the_first_unknown_moment(tmp_path: Path) -> None:
    first = _unknown("evt-k", days_ago=40)
    dead = write_jsonl(tmp_path / "dead.jsonl", [first, _unknown("evt-k", days_ago=40) | {"at": first["at"]}])
    again = tmp_path / "again.jsonl"

    outcomes = _replay_into_429s(dead, again)

    assert [o.status for o in outcomes] == [UNKNOWN, UNKNOWN]
    letters = list(read_dead_letters(again))
    # Both letters of evt-k must say "maybe stored since 40 days ago": one that says "since now" replays
    # in ten days, 50 days after a send Togai may have stored and has forgotten by then.
    assert [letter.unsure_since for letter in letters] == [first["at"], first["at"]], letters


def test_two_unknown_letters_of_one_key_keep_the_earliest_moment(tmp_path: Path) -> None:
    oldest = _unknown("evt-k", days_ago=40)
    dead = write_jsonl(tmp_path / "dead.jsonl", [oldest, _unknown("evt-k", days_ago=2)])
    again = tmp_path / "again.jsonl"

    outcomes = _replay_into_429s(dead, again)

    # The event may have been stored 40 days ago: that is where Togai's window runs from.
    assert outcomes[0].status is UNKNOWN
    assert outcomes[0].unsure_since == oldest["at"], outcomes[0]


def test_cli_replay_keeps_every_letter_of_a_repeated_unknown_key_unknown(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    first = _unknown("evt-k", days_ago=40)
    dead = write_jsonl(tmp_path / "dead.jsonl", [first, _unknown("evt-k", days_ago=40) | {"at": first["at"]}])
    mock.faults(rate_429=1)

    result = run_cli("replay", "togai", str(dead), "--max-attempts", "1", "--batch-events", "1")

    assert result.code == 2, result.out + result.err
    letters = read_jsonl(tmp_path / "dead.remaining.jsonl")
    # README: a failed letter "was surely not stored and replays at any age" - a replay of this one after
    # day 45 would bill evt-k twice if the first send was stored.
    assert [(letter["status"], letter.get("unsure_since")) for letter in letters] == [
        ("unknown", first["at"]),
        ("unknown", first["at"]),
    ], letters


def test_a_replay_into_429s_keeps_an_unknown_letter_unknown_and_its_moment(tmp_path: Path) -> None:
    """What holds: one letter, one key - the new letter is unknown with the first send's moment."""
    letter = _unknown("evt-one", days_ago=40)
    dead = write_jsonl(tmp_path / "dead.jsonl", [letter])
    again = tmp_path / "again.jsonl"

    (outcome,) = _replay_into_429s(dead, again)

    assert (outcome.status, outcome.unsure_since) == (UNKNOWN, letter["at"])
    ((status, since),) = [(new.status, new.unsure_since) for new in read_dead_letters(again)]
    assert (status, since) == ("unknown", letter["at"])


def test_a_bom_before_the_first_letter_is_ignored_by_the_library_replay(tmp_path: Path) -> None:
    """What holds: the BOM of an editor is dropped in read_dead_letters (the library's replay) too."""
    letter = _unknown("evt-bom", days_ago=1) | {"status": "failed"}
    dead = tmp_path / "dead.jsonl"
    dead.write_bytes(b"\xef\xbb\xbf" + write_jsonl(tmp_path / "plain.jsonl", [letter]).read_bytes())
    assert [
        found.key for found in read_dead_letters(dead, on_bad_line=lambda bad: pytest.fail(str(bad)))
    ] == ["evt-bom"]


# --- the Redis budget -----------------------------------------------------------------------------------


def test_a_redis_that_never_answers_does_not_fail_every_event_of_a_short_timeout_client() -> None:
    # Accepts connections, never answers: a Redis stuck in a long script, or a proxy in front of a dead one.
    redis = FakeRedis(booked("0.000000"), delay=60)
    server = Scripted(default=accepted)
    try:
        with Togai(
            "t",
            transport=server.transport(),
            retry=ONE_TRY,
            max_requests_per_second=40,
            timeout=0.3,  # below the 0.5 s Redis bound: each call is bounded by the request's wait
            rate_budget=f"{redis.url}?key=mute",
        ) as client:
            reports = [client.send([make_event("togai", n, id=f"evt-{n}")]) for n in range(4)]
    finally:
        redis.close()

    # README: "If Redis cannot be reached the client logs one warning and paces on its own until it is
    # back: events are never held back by the budget store"; "A call past 0.5 s counts as Redis
    # unreachable". Each call here runs until redis-py's 0.5 s socket timeout, but as nobody waits for it
    # any more it is never counted: the first request may get "no slot", but not every request for ever.
    statuses = [report.statuses[0] for report in reports]
    assert statuses[-1] is OutcomeStatus.DELIVERED, [r.outcomes[0].reason for r in reports]


def test_a_process_exits_while_a_trickling_redis_still_holds_a_budget_call() -> None:
    # Each byte comes well inside redis-py's 0.5 s read timeout: the call itself lasts a minute.
    redis = FakeRedis(bulk("0" * 600), trickle=0.1)
    program = textwrap.dedent(
        f"""
        import httpx
        from billing_events import RetryPolicy, Togai
        ok = httpx.MockTransport(lambda request: httpx.Response(202, json={{"success": True}}))
        event = {{"schemaName": "s", "timestamp": "2024-05-01T10:15:30Z", "accountId": "a",
                 "attributes": [], "dimensions": {{}}}}
        with Togai("t", transport=ok, retry=RetryPolicy(max_attempts=1), max_requests_per_second=40,
                   rate_budget="{redis.url}?key=stuck") as client:
            print(client.send([event]).statuses[0].value, flush=True)
        """
    )
    try:
        # A healthy run of this program takes about a second.
        done = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, timeout=4, env=dict(os.environ)
        )
        hung = False
    except subprocess.TimeoutExpired as exc:
        hung, done = True, exc  # type: ignore[assignment]
    finally:
        redis.close()

    # The call was given up at 0.5 s and the event delivered (paced locally), as README says; but the
    # process cannot end: interpreter exit joins the pool's thread, still reading the trickle. README
    # ("At exit"): the exit hook "never hangs the process"; the bound exists so a Redis cannot hold us.
    assert not hung, f"the process did not exit; it printed {done.stdout!r}"
    assert done.stdout.strip() == "delivered", done.stdout + done.stderr


def test_a_slow_pace_is_kept_when_requests_may_wait_longer_than_300_seconds(tmp_path: Path) -> None:
    # One request a minute, requests that may wait 10 minutes for their slot (timeout=600): README
    # "Waiting for a slot is bounded by the request timeout"; "Paces of any speed are kept".
    budget = open_budget(f"sqlite:///{tmp_path / 'budget.db'}?key=slow")
    waits = [budget.reserve("/ingest", 60.0, 60.0, 600.0) for _ in range(10)]

    booked = [booking.wait for booking in waits if booking is not None]
    assert len(booked) == len(waits), waits
    # Each request queues behind the one before: no wait may be shorter than the one booked before it.
    # Today the 9th finds the 8th's slot (480 s ahead) "stale" and goes at once.
    assert all(b >= a for a, b in itertools.pairwise(booked)), [round(w) for w in booked]


def test_re_sending_a_replays_unknown_events_keeps_their_first_moment(tmp_path: Path) -> None:
    letter = _unknown("evt-lost", days_ago=40)
    dead = write_jsonl(tmp_path / "dead.jsonl", [letter])
    again = tmp_path / "again.jsonl"

    def lost(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("the answer never came", request=request)

    with Togai(
        "t",
        base_url="http://togai.local",
        transport=httpx.MockTransport(lost),
        retry=ONE_TRY,
        dead_letter_path=again,
    ) as client:
        report = client.replay(dead)
        assert (report.outcomes[0].status, report.outcomes[0].unsure_since) == (UNKNOWN, letter["at"])
        # README: "report.to_resend() gives the same events for a new send()"; its answer is lost again.
        client.send(report.to_resend())

    # README: "The window runs from the first send that may have stored the event, not from the last
    # letter." The re-send's letter says "since now": a replay of it in ten days (day 50) is let through.
    assert [found.unsure_since for found in read_dead_letters(again)] == [letter["at"], letter["at"]]


def test_a_background_sender_drained_at_exit_still_draws_from_a_reachable_redis_budget() -> None:
    redis = FakeRedis(booked("0.000000"))
    program = textwrap.dedent(
        f"""
        import httpx, logging
        logging.basicConfig(level=logging.WARNING, format="%(name)s %(message)s")
        from billing_events import RetryPolicy, Togai
        ok = httpx.MockTransport(lambda request: httpx.Response(202, json={{"success": True}}))
        client = Togai("t", transport=ok, retry=RetryPolicy(max_attempts=1), max_requests_per_second=40,
                       rate_budget="{redis.url}?key=exit")
        sender = client.background(flush_interval=60.0)
        for n in range(3):
            sender.track({{"schemaName": "s", "timestamp": "2024-05-01T10:15:30Z", "accountId": "a",
                          "attributes": [], "dimensions": {{}}, "id": f"evt-{{n}}"}})
        # No close(): README "At exit. A hook closes the sender"
        """
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", program], capture_output=True, text=True, timeout=10, env=dict(os.environ)
        )
    finally:
        redis.close()

    assert done.returncode == 0, done.stderr
    # Redis answers: README's one warning is for a Redis that cannot be reached. Today concurrent.futures'
    # own exit hook runs first, so submit() raises "cannot schedule new futures after interpreter shutdown"
    # and the drain paces alone, outside the fleet's budget.
    assert "rate budget" not in done.stderr, done.stderr


def test_an_async_client_with_a_short_timeout_is_not_failed_for_ever_by_a_mute_redis() -> None:
    redis = FakeRedis(booked("0.000000"), delay=60)
    server = Scripted(default=accepted)

    async def run() -> list[Report]:
        async with AsyncTogai(
            "t",
            transport=server.transport(),
            retry=ONE_TRY,
            max_requests_per_second=40,
            timeout=0.3,
            rate_budget=f"{redis.url}?key=mute-async",
        ) as client:
            return [await client.send([make_event("togai", n, id=f"evt-{n}")]) for n in range(4)]

    try:
        reports = asyncio.run(run())
    finally:
        redis.close()
    # Each call is cancelled at 0.3 s, so none ever lasts the 0.5 s that "counts as Redis unreachable".
    assert reports[-1].statuses[0] is OutcomeStatus.DELIVERED, [r.outcomes[0].reason for r in reports]


# --- the CLI's advice after an interrupted replay --------------------------------------------------------


def test_what_an_interrupted_togai_replay_says_of_its_rerun_is_what_the_rerun_does(
    run_cli: RunCli, mock: Mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    letters = [_unknown(f"k-{n}", days_ago=1) | {"status": "failed"} for n in range(20)]
    for n, letter in enumerate(letters):
        letter["event"] = make_event("togai", n, id=f"k-{n}")
    dead = write_jsonl(tmp_path / "dead.jsonl", letters)
    mock.faults(latency_ms=200)
    with wrapped_sender(monkeypatch, lambda client: SigintOnCall(client, 2)):
        stopped = run_cli(
            "replay",
            "togai",
            str(dead),
            "--batch-events",
            "10",
            "--max-in-flight",
            "1",
            "--report",
            "first.json",
        )
    assert stopped.code == 130, stopped.out + stopped.err
    mock.faults(latency_ms=0)
    delivered_first = report_of(Path("first.json"))["counts"]["delivered"]
    assert delivered_first > 0

    rerun = run_cli("replay", "togai", str(dead), "--report", "again.json")
    assert rerun.code == 0, rerun.out + rerun.err

    # README (Command line): "What the first run delivered comes back as a duplicate"; README (Idempotency):
    # "Togai answers a repeated id with 202 ... so the overlay reports it delivered". The advice printed
    # must match what the rerun then shows.
    promised = "comes back as duplicate" in " ".join(stopped.out.split())
    counts = report_of(Path("again.json"))["counts"]
    assert not promised or counts["duplicate"] == delivered_first, (stopped.out, counts)
