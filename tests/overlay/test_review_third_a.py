"""Review (third reading): spool salvage notes, retried counts, dead-letter write errors, secrets.

Each xfail(strict=True) test asserts what the README promises and fails today for the stated reason;
the plain tests pin what holds. In-process spools and ``httpx.MockTransport``; no sleeps, no network.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import httpx
import pytest

from billing_events import OutcomeStatus, RetryPolicy, SenderClosedError, Togai
from billing_events.spool import _adopt, spool_status

from .scripted import Scripted, accepted, togai_event
from .spool_support import damaged_dead_file, drained_ids, togai_spool, unreadable_intakes

TOKEN = "review-token-third-a"
NO_WAIT = RetryPolicy(max_attempts=3, initial_delay=0, max_delay=0, max_retry_after=0)


# -- the spool: a salvage cut short, then resumed ------------------------------------------------------


def test_a_salvage_cut_short_by_a_deadline_then_resumed_adopts_each_event_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README ("Damage"): a salvage a deadline cuts short leaves the damaged file in place, and the
    next scan reads on from there; the intake read after it must not bring back what the first part of
    the salvage took in already (those events are in SQLite and in the intake's segment both)."""
    damaged_dead_file(tmp_path, 400)
    monkeypatch.setattr(_adopt, "MERGE_CHUNK", 50)  # a small file behaves as a large one in 2000-row chunks
    calls = {"n": 0}

    def out_of_time(self: _adopt.Adoption) -> bool:
        calls["n"] += 1
        return calls["n"] == 2  # the 2 s at start run out after the first chunk

    with monkeypatch.context() as patch:
        patch.setattr(_adopt.Adoption, "_out_of_time", out_of_time)
        adopter = togai_spool(tmp_path)
    try:
        assert adopter.recovered == 50  # the first chunk, then the deadline
        adopter.adopt()  # the next scan reads on
        ids = drained_ids(adopter)
        twice = len(ids) - len(set(ids))
        assert twice == 0, f"{twice} events adopted twice"
        assert set(ids) == {f"ev-{n}" for n in range(400)}
    finally:
        adopter.close()


def test_a_salvage_in_one_scan_adopts_each_event_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same file salvaged in one scan (no deadline): every event once, none lost."""
    damaged_dead_file(tmp_path, 400)
    monkeypatch.setattr(_adopt, "MERGE_CHUNK", 50)
    adopter = togai_spool(tmp_path)
    try:
        ids = drained_ids(adopter)
        assert len(ids) == len(set(ids))
        assert set(ids) == {f"ev-{n}" for n in range(400)}
        assert not list(tmp_path.glob("*.salvaged"))  # the intake fitted: no note left behind
    finally:
        adopter.close()


def test_a_salvage_whose_note_cannot_be_written_neither_stops_the_sender_nor_doubles_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README ("Damage"): a corrupt spool file "never stops a sender". The note of salvaged seqs is a
    new write in the salvage: when the disk refuses it (ENOSPC, EIO, as it may when the intake could
    not be read either), the sender must still start, and no scan may take the same rows in again."""
    damaged_dead_file(tmp_path, 400)

    def no_room(file: object, *args: object, **kwargs: object) -> object:
        if str(file).endswith(".salvaged.new"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return open(file, *args, **kwargs)  # type: ignore[call-overload]

    with monkeypatch.context() as patch:
        unreadable_intakes(patch)
        patch.setattr(_adopt, "open", no_room, raising=False)
        try:
            adopter = togai_spool(tmp_path)
        except OSError as exc:
            pytest.fail(f"the sender did not start: {exc!r}")
        try:
            adopter.adopt()  # the scans every 2 s
            adopter.adopt()
            ids = drained_ids(adopter)
            assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} events adopted again"
        finally:
            adopter.close()


def test_spool_status_counts_the_events_waiting_in_a_set_aside_files_intake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README ("Spool status"): for each file, "the events it still holds". A damaged file's intake
    that could not be read at the salvage waits in its files (its SQLite part set aside, the salvaged
    seqs written down): those events are still to send, and status must count them."""
    damaged_dead_file(tmp_path, 400)
    with monkeypatch.context() as patch:
        unreadable_intakes(patch)
        adopter = togai_spool(tmp_path)  # salvages what SQLite still holds; the intake waits
        salvaged = adopter.recovered
        adopter.close()  # its own events stay in its file, for the next sender
    assert 0 < salvaged < 400
    held = sum(item.pending or 0 for item in spool_status(tmp_path))
    assert held == 400, f"spool status shows {held} events; {400 - salvaged} wait in an intake"


# -- secrets: the scrubbing reader of every answer ------------------------------------------------------


def test_a_short_token_still_gets_its_events_delivered() -> None:
    """A token shorter than MIN_SECRET_LENGTH (a local mock's "dev", a test's "t") is not scrubbed, but
    its requests must work: the server accepted the batch, so each event is delivered."""
    server = Scripted(default=accepted)
    client = Togai("dev", base_url="http://togai.test", transport=server.transport(), retry=NO_WAIT)
    report = client.send([togai_event(n) for n in range(3)])
    assert len(server.requests) == 1
    assert report.counts[OutcomeStatus.DELIVERED] == 3, [o.reason for o in report.outcomes]


def test_a_long_token_echoed_in_a_utf16_json_escape_is_scrubbed() -> None:
    """A 2xx echo in UTF-16 that spells the token with JSON escapes: the report carries no token."""
    token = "sk_live_" + "a1B2c3D4e5F6g7H8"
    spelled = "".join(f"\\u{ord(c):04x}" for c in token)

    def echo(request: httpx.Request) -> httpx.Response:
        body = ('{"success": false, "message": "bad key ' + spelled + '"}').encode("utf-16-le")
        return httpx.Response(400, content=body, headers={"content-type": "application/json"})

    client = Togai(token, base_url="http://togai.test", transport=httpx.MockTransport(echo), retry=NO_WAIT)
    report = client.send([togai_event(0)])
    text = repr(report.outcomes) + str([o.reason for o in report.outcomes])
    assert token not in text


# -- retried against what was sent ----------------------------------------------------------------------


def test_retried_does_not_count_re_sends_the_rate_budget_refused() -> None:
    """README: ``retried`` counts "events sent again after a wait". With a pace of one request every
    10 s and a 1 s request timeout (the longest a request waits for its slot), the budget's burst lets
    one re-send leave; the next one the pacer refuses (BudgetTimeout) before a byte goes out, yet it is
    counted (and logged at INFO) as sent again."""
    server = Scripted(default=lambda request: httpx.Response(503, json={"message": "down"}))
    client = Togai(
        TOKEN,
        base_url="http://togai.test",
        transport=server.transport(),
        retry=NO_WAIT,
        max_requests_per_second=0.1,
        timeout=1,
    )
    report = client.send([togai_event(n) for n in range(4)])
    assert report.counts[OutcomeStatus.UNKNOWN] == 4
    assert len(server.requests) < NO_WAIT.max_attempts  # an attempt the pacer refused never reached it
    sent_again = 4 * (len(server.requests) - 1)
    assert client.stats.retried == sent_again


def test_retried_counts_each_re_send_that_left() -> None:
    server = Scripted(
        httpx.Response(503, json={"message": "down"}),
        httpx.Response(429, json={"message": "slow"}, headers={"Retry-After": "0"}),
        default=accepted,
    )
    client = Togai(TOKEN, base_url="http://togai.test", transport=server.transport(), retry=NO_WAIT)
    report = client.send([togai_event(n) for n in range(4)])
    assert len(server.requests) == 3 and report.counts[OutcomeStatus.DELIVERED] == 4
    assert client.stats.retried == 8


# -- dead letters that cannot be written ---------------------------------------------------------------


def test_dead_letters_held_back_by_the_error_throttle_are_logged_by_close(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """README: "A letter that cannot be written (a full disk) is logged"; the ERROR is throttled, "the
    next one counting the letters held back". When no next one comes, close() must say it, as it does
    for the held-back outcome warnings: else the letters of every send after the first are lost silently."""
    caplog.set_level(logging.WARNING, logger="billing_events")
    client = Togai(
        TOKEN,
        base_url="http://togai.test",
        transport=Scripted(default=accepted).transport(),
        dead_letter_path=tmp_path / "no-such-dir" / "dead.jsonl",
    )
    client.send([togai_event(n, schemaName="") for n in range(5)])
    client.send([togai_event(n, schemaName="") for n in range(5, 12)])  # within 10 s: held back
    client.close()
    assert client.dead_letter_file is not None and client.dead_letter_file.unwritten == 12
    errors = [r.getMessage() for r in caplog.records if r.name == "billing_events.deadletter"]
    # The first ERROR names 1 letter (each refused event is written on its own); 11 more were held back.
    assert any("11" in message for message in errors[1:]), errors


# -- a closed sender refuses bad events --------------------------------------------------------------------


def test_a_closed_sender_refuses_a_bad_event_without_counting_it(tmp_path: Path) -> None:
    client = Togai(TOKEN, base_url="http://togai.test", transport=Scripted(default=accepted).transport())
    sender = client.background(spool=tmp_path / "spool")
    sender.track(togai_event(0))
    stats = sender.close()
    with pytest.raises(SenderClosedError):
        sender.track(togai_event(1, schemaName=""))
    assert sender.stats.rejected == stats.rejected == 0
    assert stats.delivered == 1
