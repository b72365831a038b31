"""Review (replayapi): the library's dead letters and replay, and RetryPolicy as users configure it."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from billing_events import (
    ConfigurationError,
    Lago,
    OutcomeStatus,
    RetryPolicy,
    Togai,
    read_dead_letters,
)

from .scripted import LagoLike, Scripted, TogaiLike, lago_event, togai_event

NO_WAIT = RetryPolicy(max_attempts=2, initial_delay=0, max_delay=0, max_retry_after=0)


def _letter(key: str, status: str = "failed", **extra: Any) -> bytes:
    at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    letter = {"provider": "togai", "key": key, "status": status, "reason": "x", "at": at}
    letter["event"] = togai_event(1, id=key)
    letter.update(extra)
    return orjson.dumps(letter)


def _togai(transport: httpx.BaseTransport, **options: Any) -> Togai:
    return Togai(
        "t", base_url="http://togai.local", transport=transport, max_requests_per_second=None, **options
    )


# -- defects ------------------------------------------------------------------------------------


def test_a_letter_written_after_a_line_cut_short_is_still_replayed(tmp_path: Path) -> None:
    """README: a line cut short by a crash "does not stop a replay: every good letter is sent". The
    process that comes back writes its letters to the same file; the first of them lands on the end
    of the broken line (no newline before it), and the replay skips it with the damage."""
    dead = tmp_path / "dead.jsonl"
    dead.write_bytes(_letter("evt-old") + b"\n" + _letter("evt-cut")[:40])  # a write cut short
    refused = httpx.MockTransport(lambda request: httpx.Response(401, json={"message": "bad token"}))
    with _togai(refused, retry=NO_WAIT, dead_letter_path=dead) as client:
        assert client.send([togai_event(2, id="evt-new")]).outcomes[0].status is OutcomeStatus.FAILED

    store = TogaiLike()
    bad: list[object] = []
    with _togai(httpx.MockTransport(store), retry=NO_WAIT) as client:
        report = client.replay(dead, on_bad_line=bad.append)
    assert len(bad) == 1  # the cut line, and only it
    assert sorted(store.stored) == ["evt-new", "evt-old"], [str(b) for b in bad]
    assert report.ok


def test_more_than_1024_attempts_end_with_an_outcome_not_an_overflow() -> None:
    """README: ``deadline=0`` retries by count only, and per-event problems never raise out of send().
    A policy that allows many quick attempts (a flaky local server) ends the event unknown."""
    attempts = 1100
    policy = RetryPolicy(max_attempts=attempts, deadline=0, initial_delay=0.0, max_delay=0.0)
    busy = Scripted(default=httpx.Response(503, json={"message": "busy"}))
    with _togai(busy.transport(), retry=policy) as client:
        outcome = client.send([togai_event(1, id="evt-busy")]).outcomes[0]
    assert (outcome.status, outcome.attempts) == (OutcomeStatus.UNKNOWN, attempts)


@pytest.mark.parametrize("option", ["deadline", "initial_delay", "max_delay", "max_retry_after"])
def test_an_int_too_large_for_a_float_is_refused_by_name(option: str) -> None:
    with pytest.raises(ConfigurationError, match=option):
        RetryPolicy(**{option: 10**400})


@pytest.fixture
def tokyo() -> Iterator[None]:
    """The host's local zone is UTC+9 (as on a server in Japan); restored after the test."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.mark.parametrize("form", ["asctime", "-0000"])
def test_an_http_date_retry_after_is_read_as_utc_whatever_the_hosts_zone(tokyo: None, form: str) -> None:
    """RFC 9110 5.6.7: an HTTP-date is UTC, and a recipient must accept the asctime form (which names no
    zone). On a host in UTC+9, a Retry-After an hour ahead reads as 0 s (west of UTC it reads hours too long)."""
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    value = (
        later.strftime("%a %b %d %H:%M:%S %Y")
        if form == "asctime"
        else later.strftime("%a, %d %b %Y %H:%M:%S -0000")
    )
    throttled = httpx.MockTransport(
        lambda request: httpx.Response(429, headers={"Retry-After": value}, json={"message": "slow"})
    )
    with _togai(throttled, retry=RetryPolicy(max_attempts=1)) as client:
        outcome = client.send([togai_event(1)]).outcomes[0]
    assert outcome.status is OutcomeStatus.FAILED
    hint = outcome.error.retry_after  # type: ignore[union-attr]
    assert hint is not None and 3500 < hint <= 3600, (value, hint)


def test_read_dead_letters_gives_the_head_of_an_event_too_large_to_keep(tmp_path: Path) -> None:
    """README: such a letter keeps "the first 64 KiB of its JSON in event_head, to find it by", and its
    ``clipped`` note says "its first N characters are event_head"; the held-back outcome's reason too."""
    dead = tmp_path / "dead.jsonl"
    nowhere = httpx.MockTransport(lambda request: httpx.Response(500))
    with _togai(nowhere, retry=NO_WAIT, dead_letter_path=dead) as client:
        client.send([togai_event(0, id="evt-huge", dimensions={"region": "x" * 3_000_000})])
    raw = orjson.loads(dead.read_bytes())
    assert raw["event"] == {} and raw["event_head"].startswith("{")
    (letter,) = read_dead_letters(dead)
    assert letter.clipped is not None
    assert getattr(letter, "event_head", None) == raw["event_head"]


# -- what holds ---------------------------------------------------------------------------------


def test_a_lago_replay_of_events_already_stored_is_all_duplicates_with_the_same_keys_and_stamps(
    tmp_path: Path,
) -> None:
    """Lost answers (503 after the store) leave unknown letters; the replay's events are all refused as
    value_already_exist: every one is a duplicate, the report is ok, and the request carries each letter's
    event byte for byte (key and timestamp, the overlay's own stamp included)."""
    store = LagoLike()

    def lost(request: httpx.Request) -> httpx.Response:
        store(request)
        return httpx.Response(503, json={"status": 503, "error": "Service Unavailable"})

    dead = tmp_path / "dead.jsonl"
    unstamped = {name: value for name, value in lago_event(9).items() if name != "timestamp"}
    options: dict[str, Any] = {"base_url": "http://lago.local", "max_requests_per_second": None}
    with Lago("k", transport=httpx.MockTransport(lost), retry=NO_WAIT, dead_letter_path=dead, **options) as c:
        assert set(c.send([lago_event(1), lago_event(2), unstamped]).statuses) == {OutcomeStatus.UNKNOWN}
    letters = list(read_dead_letters(dead))
    sent: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.extend(json.loads(request.content)["events"])
        return store(request)

    with Lago("k", transport=httpx.MockTransport(answer), retry=NO_WAIT, **options) as client:
        report = client.replay(dead)
    assert list(report.statuses) == [OutcomeStatus.DUPLICATE] * 3 and report.ok
    assert sent == [letter.event for letter in letters]
    assert sent[2]["timestamp"] == store.stored[("sub-4", "txn-9")]["timestamp"]


def test_letters_with_crlf_line_ends_replay_like_the_others(tmp_path: Path) -> None:
    dead = tmp_path / "dead.jsonl"
    dead.write_bytes(b"\xef\xbb\xbf" + _letter("evt-a") + b"\r\n\r\n" + _letter("evt-b") + b"\r\n")
    store = TogaiLike()
    bad: list[object] = []
    with _togai(httpx.MockTransport(store), retry=NO_WAIT) as client:
        report = client.replay(dead, on_bad_line=bad.append)
    assert (sorted(store.stored), bad, report.ok) == (["evt-a", "evt-b"], [], True)


def test_an_unknown_letter_replayed_twice_into_its_own_file_keeps_its_first_moment(tmp_path: Path) -> None:
    """The replays write their letters to the file they read: the second replay reads the letter twice
    (one key, one content: sent once), and every letter it writes still has the first send's moment."""
    dead = tmp_path / "dead.jsonl"
    first = "2024-05-01T10:15:31.000+00:00"
    dead.write_bytes(_letter("evt-lost", "unknown", at=first, unsure_since=first) + b"\n")
    busy = Scripted(default=httpx.Response(503, json={"message": "busy"}))
    for _ in range(2):
        with _togai(
            busy.transport(),
            retry=NO_WAIT,
            dead_letter_path=dead,
        ) as client:
            report = client.replay(dead, resend_past_window=True)
        assert {outcome.unsure_since for outcome in report} == {first}
    letters = list(read_dead_letters(dead))
    assert [(letter.status, letter.unsure_since) for letter in letters] == [("unknown", first)] * 4
    # Two requests per replay (two attempts each), one event in each: the repeated letter went out once.
    assert [len(json.loads(r.content)["events"]) for r in busy.requests] == [1, 1, 1, 1]


@pytest.mark.parametrize(
    "retry_after",
    ["0", "-5", "0.25", "1e400", "nan", "Thu, 01 Jan 1970 00:00:00 GMT", "Mon, 01 Jan 9999 00:00:00 +0200"],
)
def test_a_429_storm_ends_failed_after_the_attempts_whatever_its_retry_after(retry_after: str) -> None:
    """README: every attempt refused before processing (429) is ``failed``; a hint is a minimum capped
    at max_retry_after (here 0: no wait), and a past, zero, negative or unreadable one waits nothing."""
    storm = Scripted(
        default=httpx.Response(429, headers={"Retry-After": retry_after}, json={"message": "slow"})
    )
    policy = RetryPolicy(max_attempts=3, initial_delay=0, max_delay=0, max_retry_after=0)
    with _togai(storm.transport(), retry=policy) as client:
        outcome = client.send([togai_event(1)]).outcomes[0]
    assert (outcome.status, outcome.attempts, len(storm.requests)) == (OutcomeStatus.FAILED, 3, 3)
    assert "never stored" in (outcome.reason or "")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_attempts", 0),
        ("max_attempts", 2.0),
        ("max_attempts", True),
        ("deadline", -1),
        ("initial_delay", float("nan")),
        ("max_delay", float("inf")),
        ("max_retry_after", "5"),
    ],
)
def test_retry_policy_refuses_bad_values_naming_the_option(option: str, value: object) -> None:
    with pytest.raises(ConfigurationError, match=f"^{option}: "):
        RetryPolicy(**{option: value})
