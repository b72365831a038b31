"""``billing-events ingest`` and ``replay`` against the mock: outcomes, exit codes, dead letters."""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
from pathlib import Path

import orjson
import pytest

from cli.conftest import Mock
from cli.support import RunCli, make_event, read_jsonl, togai_event, write_jsonl
from cli.support import dead_letter as letter_of

PROVIDERS = ["togai", "lago"]
FAULTS = {"rate_429": 0.1, "rate_503": 0.1, "rate_drop": 0.05, "rate_lost_response": 0.1, "retry_after": 0}
FAST_RETRIES = ("--max-attempts", "30", "--retry-deadline", "60")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_every_line_is_delivered_once_and_the_summary_says_so(
    run_cli: RunCli, mock: Mock, tmp_path: Path, provider: str
) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [make_event(provider, index) for index in range(1234)])
    report = tmp_path / "report.json"

    result = run_cli("ingest", provider, str(source), "--report", str(report))

    assert result.code == 0, result.out + result.err
    keys = mock.keys(provider)
    assert len(keys) == len(set(keys)) == 1234
    summary = orjson.loads(report.read_bytes())
    assert summary["counts"]["delivered"] == 1234
    assert summary["exit_code"] == 0
    assert summary["finished"] is True
    assert "1,234" in result.out
    assert "delivered" in result.out


@pytest.mark.parametrize("provider", PROVIDERS)
def test_injected_faults_still_store_each_line_exactly_once(
    run_cli: RunCli, mock: Mock, tmp_path: Path, provider: str
) -> None:
    mock.faults(seed=7, **FAULTS)
    source = write_jsonl(tmp_path / "events.jsonl", [make_event(provider, index) for index in range(3000)])

    result = run_cli("ingest", provider, str(source), "--batch-events", "50", *FAST_RETRIES)

    assert result.code == 0, result.out + result.err
    keys = mock.keys(provider)
    assert len(keys) == len(set(keys)) == 3000
    assert mock.stats(provider)["requests"] > 3000 // 50  # some requests were retried


@pytest.mark.parametrize("provider", PROVIDERS)
def test_keys_derive_from_the_file_so_a_second_run_is_deduplicated(
    run_cli: RunCli, mock: Mock, tmp_path: Path, provider: str
) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [make_event(provider, index) for index in range(300)])

    assert run_cli("ingest", provider, str(source)).code == 0
    first_keys = set(mock.keys(provider))
    again = run_cli("ingest", provider, str(source), "--restart")

    assert again.code == 0
    assert set(mock.keys(provider)) == first_keys
    assert mock.stats(provider)["stored"] == 300
    assert mock.stats(provider)["duplicates"] == 300


def test_a_second_file_gets_keys_of_its_own(run_cli: RunCli, mock: Mock, tmp_path: Path) -> None:
    first = write_jsonl(tmp_path / "monday.jsonl", [togai_event(index) for index in range(10)])
    second = write_jsonl(tmp_path / "tuesday.jsonl", [togai_event(index + 100) for index in range(10)])

    assert run_cli("ingest", "togai", str(first)).code == 0
    assert run_cli("ingest", "togai", str(second)).code == 0

    assert mock.stats("togai")["stored"] == 20


def test_explicit_keys_are_kept(run_cli: RunCli, mock: Mock, tmp_path: Path) -> None:
    source = write_jsonl(
        tmp_path / "events.jsonl", [togai_event(index, id=f"mine-{index}") for index in range(5)]
    )

    assert run_cli("ingest", "togai", str(source)).code == 0

    assert sorted(mock.keys("togai")) == [f"mine-{index}" for index in range(5)]


def test_bad_lines_are_counted_and_named_and_the_rest_is_delivered(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    lines: list[dict[str, object] | str] = [make_event("lago", index) for index in range(20)]
    lines[4] = "{broken"
    lines[9] = make_event("lago", 9, timestamp="2024-05-01T10:00:00Z")
    source = write_jsonl(tmp_path / "events.jsonl", lines)
    report = tmp_path / "report.json"

    result = run_cli("ingest", "lago", str(source), "--report", str(report))

    assert result.code == 1
    assert mock.stats("lago")["stored"] == 18
    summary = orjson.loads(report.read_bytes())
    assert summary["counts"]["invalid"] == 1
    assert summary["counts"]["rejected"] == 1
    assert [(p["line"], p["status"]) for p in summary["problems"]] == [(5, "invalid"), (10, "rejected")]
    assert "timestamp" in summary["problems"][1]["reason"]
    dead = read_jsonl(tmp_path / "events.jsonl.lago.dead-letter.jsonl")
    assert [entry["status"] for entry in dead] == ["rejected"]
    assert "replay lago" in result.out


@pytest.mark.parametrize("provider", PROVIDERS)
def test_exhausted_retries_exit_2_and_replay_delivers_the_dead_letters(
    run_cli: RunCli, mock: Mock, tmp_path: Path, provider: str
) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [make_event(provider, index) for index in range(40)])
    dead_letter = tmp_path / "dead.jsonl"
    mock.faults(rate_503=1.0, retry_after=0)

    failed = run_cli(
        "ingest", provider, str(source), "--dead-letter", str(dead_letter), "--max-attempts", "2"
    )

    assert failed.code == 2
    assert mock.stats(provider)["stored"] == 0
    entries = read_jsonl(dead_letter)
    assert len(entries) == 40
    # A 503 may come after the server stored the batch: the outcome is unknown, and a replay is safe.
    assert {entry["status"] for entry in entries} == {"unknown"}
    assert "token" not in dead_letter.read_text().lower()

    mock.faults(rate_503=0.0)
    replayed = run_cli("replay", provider, str(dead_letter))

    assert replayed.code == 0, replayed.out + replayed.err
    assert sorted(mock.keys(provider)) == sorted(entry["key"] for entry in entries)

    again = run_cli("replay", provider, str(dead_letter))

    assert again.code == 0
    assert mock.stats(provider)["stored"] == 40


def test_lost_responses_with_no_retry_left_exit_2_and_replay_is_harmless(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [togai_event(index) for index in range(10)])
    mock.faults(rate_lost_response=1.0)
    report = tmp_path / "report.json"

    result = run_cli("ingest", "togai", str(source), "--max-attempts", "1", "--report", str(report))

    assert result.code == 2
    counts = orjson.loads(report.read_bytes())["counts"]
    assert counts["failed"] + counts["unknown"] == 10
    # The mock stored the events but the sender never heard so: replaying them must not count them twice.
    assert mock.stats("togai")["stored"] == 10
    mock.faults(rate_lost_response=0.0)
    assert run_cli("replay", "togai", "events.jsonl.togai.dead-letter.jsonl").code == 0
    assert mock.stats("togai")["stored"] == 10


def test_replay_only_sends_the_statuses_asked_for(run_cli: RunCli, mock: Mock, tmp_path: Path) -> None:
    dead_letter = tmp_path / "dead.jsonl"
    entries = [
        {
            "provider": "togai",
            "key": f"k-{index}",
            "status": status,
            "reason": "x",
            "event": togai_event(index, id=f"k-{index}"),
        }
        for index, status in enumerate(["failed", "rejected", "unknown", "failed"])
    ]
    write_jsonl(dead_letter, entries)

    result = run_cli("replay", "togai", str(dead_letter), "--only", "failed")

    assert result.code == 0
    assert sorted(mock.keys("togai")) == ["k-0", "k-3"]


def test_replay_refuses_dead_letters_of_the_other_provider(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    dead_letter = tmp_path / "dead.jsonl"
    write_jsonl(
        dead_letter,
        [
            {
                "provider": "lago",
                "key": "t-1",
                "status": "failed",
                "reason": None,
                "event": make_event("lago", 1),
            }
        ],
    )

    result = run_cli("replay", "togai", str(dead_letter))

    assert result.code == 1
    assert mock.stats("togai")["requests"] == 0
    assert "not togai" in result.out


def test_a_refused_token_stops_the_run_and_a_rerun_resumes(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [togai_event(index) for index in range(300)])
    options = ("--batch-events", "10", "--report", "report.json")

    refused = run_cli("ingest", "togai", str(source), "--token", "not-the-token", *options)

    assert refused.code == 64
    assert "refused the token" in refused.err
    assert mock.stats("togai")["stored"] == 0
    # Stopped at the first refusal. Batches already in flight were cut: counted as failed (never sent)
    # or unknown (sent, no answer read), and sent again by the rerun like every other line.
    counts = orjson.loads(Path("report.json").read_bytes())["counts"]
    assert counts["delivered"] == counts["duplicate"] == counts["rejected"] == 0

    resumed = run_cli("ingest", "togai", str(source), *options)

    assert resumed.code == 0, resumed.out + resumed.err
    assert mock.stats("togai")["stored"] == 300


def test_replay_refuses_togai_letters_unknown_for_longer_than_its_45_day_window(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    # Togai forgets an id after 45 days: an unknown event it did store then would be billed twice.
    dead_letter = write_jsonl(
        tmp_path / "dead.jsonl",
        [
            letter_of("togai", 0, "unknown", days_ago=50),  # may be stored, and its id forgotten
            letter_of("togai", 1, "unknown", days_ago=10),  # still inside the window: a replay is safe
            letter_of("togai", 2, "failed", days_ago=50),  # surely not stored: safe at any age
        ],
    )

    refused = run_cli("replay", "togai", str(dead_letter))

    assert refused.code == 1
    assert sorted(mock.keys("togai")) == ["k-1", "k-2"]
    assert "unknown since" in refused.out and "--resend-past-window" in refused.out

    forced = run_cli("replay", "togai", str(dead_letter), "--resend-past-window")

    assert forced.code == 0
    assert sorted(set(mock.keys("togai"))) == ["k-0", "k-1", "k-2"]


def test_replay_of_old_lago_letters_is_not_limited(run_cli: RunCli, mock: Mock, tmp_path: Path) -> None:
    # Lago keeps its keys for good: a replay of any age is dropped as a duplicate if it was stored.
    dead_letter = write_jsonl(tmp_path / "dead.jsonl", [letter_of("lago", 0, "unknown", days_ago=400)])

    result = run_cli("replay", "lago", str(dead_letter))

    assert result.code == 0
    assert mock.keys("lago") == ["k-0"]


@pytest.mark.parametrize(
    ("provider", "age_days", "held_back"), [("togai", 46, True), ("togai", 10, False), ("lago", 400, False)]
)
def test_a_rerun_holds_back_togai_lines_unknown_for_longer_than_its_45_day_window(
    run_cli: RunCli, mock: Mock, tmp_path: Path, provider: str, age_days: float, held_back: bool
) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [make_event(provider, index) for index in range(10)])
    mock.faults(rate_lost_response=1.0)  # stored, but the answer never arrives: unknown
    assert run_cli("ingest", provider, str(source), "--max-attempts", "1").code == 2
    mock.faults(rate_lost_response=0.0)
    state = tmp_path / f"events.jsonl.{provider}.state.sqlite"
    with contextlib.closing(sqlite3.connect(state)) as db, db:
        db.execute("UPDATE lines SET unsure_since = unsure_since - ?", (age_days * 86_400,))
    requests = mock.stats(provider)["requests"]

    again = run_cli("ingest", provider, str(source), "--report", "report.json")

    report = orjson.loads(Path("report.json").read_bytes())
    counts = report["counts"]
    if held_back:
        # Togai has forgotten these ids: if it stored them, a re-send would bill them twice.
        assert again.code != 0 and counts["unknown"] == 10
        assert mock.stats(provider)["requests"] == requests
        reasons = {problem["reason"].split(":")[0] for problem in report["problems"]}
        assert len(reasons) == 1 and "past Togai's window for repeated keys" in next(iter(reasons))
        forced = run_cli("ingest", provider, str(source), "--resend-past-window")
        assert forced.code == 0 and mock.stats(provider)["requests"] > requests
    else:
        assert again.code == 0 and counts["delivered"] + counts["duplicate"] == 10
    assert len(set(mock.keys(provider))) == 10


def test_a_state_written_before_lines_kept_their_unknown_time_is_read_and_extended(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [make_event("togai", index) for index in range(5)])
    assert run_cli("ingest", "togai", str(source)).code == 0
    state = tmp_path / "events.jsonl.togai.state.sqlite"
    with contextlib.closing(sqlite3.connect(state)) as db, db:
        # The table as the previous release wrote it: no unsure_since column.
        db.executescript(
            "CREATE TABLE old_lines AS SELECT fingerprint, stamp, status FROM lines; DROP TABLE lines;"
            " CREATE TABLE lines (fingerprint BLOB PRIMARY KEY, stamp INTEGER, status INTEGER) WITHOUT ROWID;"
            " INSERT INTO lines SELECT * FROM old_lines; DROP TABLE old_lines;"
        )

    again = run_cli("ingest", "togai", str(source))

    assert again.code == 0 and "nothing to send" in again.out
    with contextlib.closing(sqlite3.connect(state)) as db:
        assert "unsure_since" in {row[1] for row in db.execute("PRAGMA table_info(lines)")}


def test_replay_refuses_a_letter_whose_event_was_too_large_to_keep(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    # As DeadLetterFile writes an event far beyond any request body: its start, never a sendable copy.
    letter = {
        "provider": "togai",
        "key": "k-0",
        "status": "rejected",
        "reason": "schemaName: at most 50 characters",
        "event": {},
        "at": dt.datetime.now(dt.UTC).isoformat(),
        "clipped": "the event's JSON was 3,000,120 bytes; its first 65,536 characters are event_head",
        "event_head": '{"schemaName":"xxxx',
    }
    letters = write_jsonl(tmp_path / "dead.jsonl", [letter])

    result = run_cli("replay", "togai", str(letters))

    assert result.code == 1 and mock.stats("togai")["requests"] == 0
    assert "too large to keep" in result.out
