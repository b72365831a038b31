"""Review (hostile): dead letters, ``replay`` and the CLI's resume from its state file.

The first tests are defects it found (each failed before its fix); the others pin what holds.
"""

from __future__ import annotations

import signal
import time
import types
from pathlib import Path

import orjson
import pytest

from billing_events import outcomes
from cli.conftest import TOKEN, Mock
from cli.support import (
    RunCli,
    SigintOnCall,
    dead_letter,
    lago_event,
    make_event,
    read_jsonl,
    report_of,
    start_ingest,
    wait_for_checkpoint,
    wrapped_sender,
    write_jsonl,
)

DAY = 86400.0


def _clock_ahead(monkeypatch: pytest.MonkeyPatch, days: float) -> None:
    """Time as the 45-day window sees it (``outcomes.stale_before``) moves ``days`` ahead."""
    real = time.time
    monkeypatch.setattr(outcomes, "time", types.SimpleNamespace(time=lambda: real() + days * DAY))


# --- the 45-day window across re-sends -------------------------------------------------------------


def test_a_replayed_unknown_letter_keeps_the_window_of_its_first_send(
    run_cli: RunCli, mock: Mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sent 40 days ago, unknown since: a replay today is safe (inside the window) but its answer is lost too.
    dead = write_jsonl(tmp_path / "dead.jsonl", [dead_letter("togai", 1, "unknown", days_ago=40)])
    mock.faults(rate_lost_response=1)
    first = run_cli("replay", "togai", str(dead), "--max-attempts", "1")
    assert first.code == 2, first.out + first.err
    remaining = tmp_path / "dead.remaining.jsonl"
    assert [letter["status"] for letter in read_jsonl(remaining)] == ["unknown"]

    # Ten days on, the first send is 50 days old: if Togai stored it, it has forgotten the id.
    mock.faults(rate_lost_response=0)
    _clock_ahead(monkeypatch, 10)
    before = mock.stats("togai")["requests"]
    again = run_cli("replay", "togai", str(remaining))

    assert mock.stats("togai")["requests"] == before, "a re-send past the window could bill the event twice"
    assert again.code == 1
    assert "--resend-past-window" in again.out


def test_a_replayed_unknown_letter_stays_unknown_when_the_replay_is_refused(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    # The first send may have been stored; a 429 on the replay says nothing about that first send.
    dead = write_jsonl(tmp_path / "dead.jsonl", [dead_letter("togai", 1, "unknown", days_ago=40)])
    mock.faults(rate_429=1)
    result = run_cli("replay", "togai", str(dead), "--max-attempts", "1")

    assert result.code == 2, result.out + result.err
    (letter,) = read_jsonl(tmp_path / "dead.remaining.jsonl")
    # README: failed means "the provider surely does not have it", and failed letters replay at any age.
    assert letter["status"] == "unknown", letter


def test_ingest_holds_back_a_line_once_unknown_past_the_window_even_if_a_rerun_failed(
    run_cli: RunCli, mock: Mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [make_event("togai", 0, id="evt-0")])
    # Day 0: the answer is lost; Togai may have stored the event.
    mock.faults(rate_lost_response=1)
    assert run_cli("ingest", "togai", str(source), "--max-attempts", "1").code == 2
    # A re-run inside the window is throttled until its attempts run out.
    mock.faults(rate_lost_response=0, rate_429=1)
    assert run_cli("ingest", "togai", str(source), "--max-attempts", "1").code == 2
    # Day 50: Togai has forgotten evt-0; a re-send would bill it again if day 0's send was stored.
    mock.faults(rate_429=0)
    _clock_ahead(monkeypatch, 50)
    before = mock.stats("togai")["requests"]
    late = run_cli("ingest", "togai", str(source), "--report", "report.json")

    assert mock.stats("togai")["requests"] == before, "re-sent past Togai's window"
    assert late.code == 2
    assert report_of(Path("report.json"))["counts"]["unknown"] == 1


def test_ingest_holds_back_a_line_unknown_past_the_window(
    run_cli: RunCli, mock: Mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [make_event("togai", 0, id="evt-0")])
    mock.faults(rate_lost_response=1)
    assert run_cli("ingest", "togai", str(source), "--max-attempts", "1").code == 2
    mock.faults(rate_lost_response=0)
    _clock_ahead(monkeypatch, 50)
    before = mock.stats("togai")["requests"]

    late = run_cli("ingest", "togai", str(source))

    assert late.code == 2
    assert mock.stats("togai")["requests"] == before
    assert "--resend-past-window" in late.out


# --- odd dead-letter files ------------------------------------------------------------------------


def test_replay_ignores_a_byte_order_mark_as_ingest_does(run_cli: RunCli, mock: Mock, tmp_path: Path) -> None:
    letters = [orjson.dumps(dead_letter("togai", index, "failed", days_ago=1)) for index in range(3)]
    dead = tmp_path / "dead.jsonl"
    dead.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(letters) + b"\r\n")

    result = run_cli("replay", "togai", str(dead))

    assert sorted(mock.keys("togai")) == ["k-0", "k-1", "k-2"]
    assert result.code == 0, result.out


def test_replay_sends_every_good_letter_of_a_damaged_file_and_names_each_bad_line(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    good = [orjson.dumps(dead_letter("lago", index, "failed", days_ago=1)) for index in range(3)]
    huge = b'{"provider":"lago","event":{"x":"' + b"a" * (3 * 1024 * 1024) + b'"}}'
    dead = tmp_path / "dead.jsonl"
    # CRLF line ends, a non-JSON line, a line above 2 MiB, and a last line cut short by a crash.
    dead.write_bytes(
        good[0]
        + b"\r\n"
        + b"not json\r\n"
        + good[1]
        + b"\r\n"
        + huge
        + b"\r\n"
        + good[2]
        + b"\r\n"
        + good[0][:40]
    )

    result = run_cli("replay", "lago", str(dead), "--report", "report.json")

    assert result.code == 1, result.out + result.err
    assert sorted(mock.keys("lago")) == ["k-0", "k-1", "k-2"]
    report = report_of(Path("report.json"))
    assert report["counts"]["delivered"] == 3
    assert [(p["line"], p["status"]) for p in report["problems"]] == [
        (2, "invalid"),
        (4, "invalid"),
        (6, "invalid"),
    ]
    assert report["records"] == 6


def test_replay_of_an_empty_file_sends_nothing_and_exits_0(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    dead = tmp_path / "dead.jsonl"
    dead.write_bytes(b"")

    result = run_cli("replay", "togai", str(dead))

    assert result.code == 0, result.out + result.err
    assert mock.stats("togai")["requests"] == 0


def test_replay_twice_sends_the_same_key_and_timestamp_and_stores_once(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    # Lago lines without a timestamp, stamped by the CLI; lost answers make every event a dead letter.
    source = write_jsonl(tmp_path / "events.jsonl", [lago_event(index, timestamp=None) for index in range(5)])
    mock.lago_store("clickhouse")
    mock.faults(rate_lost_response=1)
    assert run_cli("ingest", "lago", str(source), "--max-attempts", "1").code == 2
    dead = tmp_path / "events.jsonl.lago.dead-letter.jsonl"
    letters = read_jsonl(dead)
    assert len(letters) == 5
    assert all(isinstance(letter["event"].get("timestamp"), int) for letter in letters)
    assert all("cli-test-token" not in line for line in dead.read_text().splitlines())

    mock.faults(rate_lost_response=0)
    assert run_cli("replay", "lago", str(dead)).code == 0
    assert run_cli("replay", "lago", str(dead)).code == 0

    stored = {(event["transaction_id"], event["timestamp"]) for event in mock.events("lago")}
    # One (key, timestamp) per line: the ClickHouse store bills each once.
    assert len(stored) == len({key for key, _ in stored}) == 5
    assert {key for key, _ in stored} == {letter["key"] for letter in letters}


# --- a real interruption of the CLI -----------------------------------------------------------------


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_a_killed_lago_run_without_timestamps_resumes_with_the_same_stamps(
    run_cli: RunCli, mock: Mock, tmp_path: Path, stop: signal.Signals
) -> None:
    # ClickHouse bills (key, timestamp) pairs: a resumed line sent with a new stamp would be billed twice.
    source = write_jsonl(
        tmp_path / "events.jsonl", [lago_event(index, timestamp=None) for index in range(120)]
    )
    mock.lago_store("clickhouse")
    mock.faults(latency_ms=100)
    process = start_ingest(mock, TOKEN, "lago", source)
    wait_for_checkpoint(process)
    process.send_signal(stop)
    _, err = process.communicate(timeout=60)
    assert process.returncode == (130 if stop is signal.SIGINT else -signal.SIGKILL), err
    assert 0 < len(mock.events("lago")) < 120 or stop is signal.SIGINT

    mock.faults(latency_ms=0)
    resumed = run_cli("ingest", "lago", str(source), "--report", "report.json")

    assert resumed.code == 0, resumed.out + resumed.err
    assert report_of(Path("report.json"))["records_settled_earlier"] > 0
    stored = {(event["transaction_id"], event["timestamp"]) for event in mock.events("lago")}
    assert len({key for key, _ in stored}) == len(stored) == 120


def test_an_input_edited_between_runs_sends_only_its_new_and_changed_lines(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    events = [make_event("togai", index) for index in range(30)]
    source = write_jsonl(tmp_path / "events.jsonl", events)
    assert run_cli("ingest", "togai", str(source)).code == 0
    before = set(mock.keys("togai"))
    # Re-sorted, one line removed, one changed, two appended.
    edited = [*reversed(events[1:])]
    edited[0] = make_event("togai", 29, accountId="changed")
    edited += [make_event("togai", 30), make_event("togai", 31)]
    write_jsonl(source, edited)

    again = run_cli("ingest", "togai", str(source), "--report", "report.json")

    assert again.code == 0, again.out + again.err
    report = report_of(Path("report.json"))
    assert report["records_this_run"] == 3
    assert report["records_settled_earlier"] == 28
    assert len(set(mock.keys("togai")) - before) == 3


def test_following_what_an_interrupted_replay_says_replays_every_letter(
    run_cli: RunCli, mock: Mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = write_jsonl(
        tmp_path / "dead.jsonl", [dead_letter("togai", index, "failed", days_ago=1) for index in range(50)]
    )
    mock.faults(latency_ms=200)
    with wrapped_sender(monkeypatch, lambda client: SigintOnCall(client, 2)):
        stopped = run_cli("replay", "togai", str(dead), "--batch-events", "10", "--max-in-flight", "1")
    assert stopped.code == 130, stopped.out + stopped.err
    mock.faults(latency_ms=0)

    # The user runs the command the output gives (the last one, if several).
    commands = [
        line.split() for line in stopped.out.splitlines() if line.strip().startswith("billing-events replay")
    ]
    assert commands, stopped.out
    resumed = run_cli(*commands[-1][1:])

    assert resumed.code == 0, resumed.out + resumed.err
    assert sorted(mock.keys("togai")) == sorted(f"k-{index}" for index in range(50))


def test_a_state_of_the_other_provider_is_refused_before_anything_is_sent(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    togai = write_jsonl(tmp_path / "togai.jsonl", [make_event("togai", 0)])
    assert run_cli("ingest", "togai", str(togai), "--state", "shared.sqlite").code == 0
    lago = write_jsonl(tmp_path / "lago.jsonl", [make_event("lago", 0)])

    refused = run_cli("ingest", "lago", str(lago), "--state", "shared.sqlite")

    assert refused.code == 64
    assert mock.stats("lago")["requests"] == 0
