"""Review: `billing-events` as an operator runs it (dry runs, a refused token, progress in a log, the state).

Each xfail names a defect; the passing tests pin what holds.
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from billing_events import Report
from billing_events.cli import main
from billing_events.cli._run import EventSender
from cli.conftest import Mock
from cli.support import (
    RunCli,
    freeze_monotonic,
    make_event,
    read_jsonl,
    report_of,
    wrapped_sender,
    write_jsonl,
)

_NO_TERMINAL_HINTS = ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR", "TERM")


def _no_terminal_hints(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _NO_TERMINAL_HINTS:
        monkeypatch.delenv(name, raising=False)


# --- --dry-run against what the run does -------------------------------------------------------------


@pytest.mark.parametrize("command", ["ingest", "replay"])
def test_dry_run_does_not_flag_the_same_line_twice_that_the_run_sends_cleanly(
    run_cli: RunCli, mock: Mock, tmp_path: Path, command: str
) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [make_event("lago", index) for index in range(3)])
    if command == "ingest":
        # The same keyed line twice: "The same line twice is no conflict; it is stored once" (README, Keys).
        source = write_jsonl(tmp_path / "keyed.jsonl", [make_event("lago", 0, transaction_id="t-0")] * 2)
    else:
        # Two runs against a server that is down append each line's letter twice to one dead-letter file.
        mock.faults(rate_503=1.0, retry_after=0)
        for _ in range(2):
            assert run_cli("ingest", "lago", str(source), "--max-attempts", "1").code == 2
        mock.faults(rate_503=0.0)
        source = tmp_path / "events.jsonl.lago.dead-letter.jsonl"
        assert len(read_jsonl(source)) == 6

    dry = run_cli(command, "lago", str(source), "--dry-run")
    real = run_cli(command, "lago", str(source))

    assert real.code == 0, real.out + real.err
    assert dry.code == real.code, dry.out
    assert "is also the key of line" not in dry.out


def test_dry_run_of_lago_stdin_without_state_refuses_what_the_run_refuses(
    mock: Mock, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unstamped = {k: v for k, v in make_event("lago", 1).items() if k != "timestamp"}
    data = write_jsonl(tmp_path / "in.jsonl", [make_event("lago", 0), unstamped]).read_bytes()

    real = main(["ingest", "lago", "-", "--no-progress"], stdin=io.BytesIO(data))
    assert real == 1  # line 2 is invalid: README, "Outcomes and exit codes"
    capsys.readouterr()
    dry = main(["ingest", "lago", "-", "--dry-run"], stdin=io.BytesIO(data))
    out = capsys.readouterr().out

    assert dry == real, out
    assert "<stdin>:2: timestamp" in out


def test_dry_run_writes_the_report_it_was_given(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the report's relative path, away from where the tests run
    source = write_jsonl(
        tmp_path / "events.jsonl", [make_event("togai", 0), make_event("togai", 1, timestamp="yesterday")]
    )

    result = run_cli("ingest", "togai", str(source), "--dry-run", "--report", "report.json")

    assert result.code == 1
    assert Path("report.json").exists(), "no report, and nothing said about it"
    report = report_of(Path("report.json"))
    assert report["exit_code"] == 1
    assert [problem["line"] for problem in report["problems"]] == [2]


def test_dry_run_sends_nothing_and_writes_no_state_or_dead_letter(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    unstamped = {k: v for k, v in make_event("lago", 1).items() if k != "timestamp"}
    source = write_jsonl(tmp_path / "events.jsonl", [make_event("lago", 0), unstamped, "{broken"])

    result = run_cli("ingest", "lago", str(source), "--dry-run", "--state", "given.sqlite")

    assert result.code == 1
    assert mock.stats("lago")["requests"] == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["events.jsonl"]


# --- a refused token ----------------------------------------------------------------------------------


def test_a_refused_token_leaves_no_dead_letter_the_report_does_not_count(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [make_event("togai", index) for index in range(30)])
    options = ("--batch-events", "10", "--max-in-flight", "1", "--report", "report.json")

    refused = run_cli("ingest", "togai", str(source), "--token", "not-the-token", *options)

    assert refused.code == 64
    assert mock.stats("togai")["stored"] == 0
    report = report_of(Path("report.json"))
    undelivered = sum(report["counts"][name] for name in ("rejected", "failed", "unknown"))
    letters_path = tmp_path / "events.jsonl.togai.dead-letter.jsonl"
    letters = read_jsonl(letters_path) if letters_path.exists() else []
    assert len(letters) == undelivered, (
        f"dead-letter file holds {len(letters)} ({sorted({x['status'] for x in letters})}),"
        f" the report counts {undelivered}"
    )


def test_a_token_from_the_command_line_appears_in_no_output_of_a_refused_run(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    token = "tok-3f9a1c77e2b84d06"
    source = write_jsonl(tmp_path / "events.jsonl", [make_event("togai", index) for index in range(30)])

    result = run_cli(
        "ingest", "togai", str(source), "--token", token, "--batch-events", "5", "--report", "r.json"
    )

    assert result.code == 64
    written = "".join(
        path.read_text(errors="replace") for path in tmp_path.iterdir() if path.suffix == ".jsonl"
    )
    assert token not in result.out + result.err + Path("r.json").read_text() + written


# --- progress on a non-terminal -----------------------------------------------------------------------


def test_a_log_gets_no_bar_by_default(
    run_cli: RunCli, mock: Mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_terminal_hints(monkeypatch)
    source = write_jsonl(tmp_path / "events.jsonl", [make_event("togai", index) for index in range(3)])

    result = run_cli("ingest", "togai", str(source))

    assert result.code == 0
    assert result.err == ""
    assert "\x1b" not in result.out


def test_force_color_does_not_draw_the_live_bar_into_a_log(
    run_cli: RunCli, mock: Mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_terminal_hints(monkeypatch)
    monkeypatch.setenv("FORCE_COLOR", "1")  # set by many CI setups so test tools keep their colours
    source = write_jsonl(tmp_path / "events.jsonl", [make_event("togai", index) for index in range(3)])

    result = run_cli("ingest", "togai", str(source))  # stderr is captured: not a terminal

    assert result.code == 0
    assert "━" not in result.err and "\x1b[?25l" not in result.err, repr(result.err[:300])


# --- the state while a batch is slow ------------------------------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _SlowSecondBatch:
    """Passes batches on; the second one takes a minute (the fake clock moves), and meanwhile a reader
    looks at what the state file has committed, as a ``kill -9`` at that moment would leave it."""

    def __init__(self, inner: EventSender, clock: _Clock, state: Path) -> None:
        self._inner = inner
        self._clock = clock
        self._state = state
        self.calls = 0
        self.committed_during_second: int | None = None

    async def send(self, events: Iterable[Mapping[str, Any]]) -> Report:
        self.calls += 1
        if self.calls == 2:
            self._clock.now += 60  # retries of 429s and 5xx can hold one batch for up to 120 s
            with sqlite3.connect(self._state) as reader:
                row = reader.execute("SELECT count(*) FROM lines WHERE status IS NOT NULL").fetchone()
            self.committed_during_second = int(row[0])
        return await self._inner.send(events)


def test_settled_lines_are_committed_while_the_next_batch_is_slow(
    run_cli: RunCli, mock: Mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()
    freeze_monotonic(monkeypatch, clock)
    source = write_jsonl(tmp_path / "events.jsonl", [make_event("togai", index) for index in range(20)])
    state = tmp_path / "events.jsonl.togai.state.sqlite"
    senders: list[_SlowSecondBatch] = []

    def wrap(client: EventSender) -> EventSender:
        senders.append(_SlowSecondBatch(client, clock, state))
        return senders[-1]

    with wrapped_sender(monkeypatch, wrap):
        result = run_cli("ingest", "togai", str(source), "--batch-events", "10", "--max-in-flight", "1")

    assert result.code == 0
    # README: "Outcomes are committed at least every half second; a run killed before a commit sends
    # those lines again". A minute after the first batch settled, it is still not committed.
    assert senders[0].committed_during_second == 10
