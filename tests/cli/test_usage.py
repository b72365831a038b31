"""The command line's interface: help text, usage errors and their exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cli.conftest import Mock
from cli.support import RunCli, togai_event, write_jsonl

INGEST_OPTIONS = [
    "--format",
    "--dry-run",
    "--state",
    "--restart",
    "--token",
    "--base-url",
    "--endpoint",
    "--timeout",
    "--max-in-flight",
    "--max-attempts",
    "--retry-deadline",
    "--batch-events",
    "--dead-letter",
    "--report",
    "--progress",
    "--verbose",
]


@pytest.mark.parametrize(
    ("provider", "token_env", "url_env"),
    [("togai", "TOGAI_API_TOKEN", "TOGAI_BASE_URL"), ("lago", "LAGO_API_KEY", "LAGO_API_URL")],
)
def test_ingest_help_documents_every_option_and_the_exit_codes(
    run_cli: RunCli, provider: str, token_env: str, url_env: str
) -> None:
    result = run_cli("ingest", provider, "--help")

    assert result.code == 0
    for option in INGEST_OPTIONS:
        assert option in result.out
    assert f"${token_env}" in result.out
    assert f"${url_env}" in result.out
    for code in ("0 ", "1 ", "2 ", "64 "):
        assert f"\n  {code}" in result.out
    assert "CSV columns" in result.out


def test_replay_help_documents_its_options(run_cli: RunCli) -> None:
    result = run_cli("replay", "lago", "--help")

    assert result.code == 0
    for option in ("DEAD_LETTER_FILE", "--only", "--dry-run", "--dead-letter", "--max-in-flight", "--token"):
        assert option in result.out


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["ingest"],
        ["ingest", "stripe", "events.jsonl"],
        ["ingest", "togai", "events.jsonl", "--max-in-flight", "0"],
        ["ingest", "togai", "events.jsonl", "--format", "xml"],
        ["replay", "lago"],
    ],
)
def test_bad_command_lines_exit_64(run_cli: RunCli, argv: list[str]) -> None:
    result = run_cli(*argv)

    assert result.code == 64
    assert "usage:" in result.err


def test_a_missing_token_is_a_usage_error_before_anything_is_read(
    run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LAGO_API_KEY", raising=False)
    result = run_cli("ingest", "lago", str(tmp_path / "absent.jsonl"))

    assert result.code == 64
    assert "LAGO_API_KEY" in result.err


def test_an_unreadable_input_file_is_a_usage_error(run_cli: RunCli, mock: Mock, tmp_path: Path) -> None:
    result = run_cli("ingest", "togai", str(tmp_path / "absent.jsonl"))

    assert result.code == 64
    assert "absent.jsonl" in result.err


def test_a_batch_above_the_provider_limit_is_refused(run_cli: RunCli, mock: Mock, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [togai_event(1)])

    result = run_cli("ingest", "lago", str(source), "--batch-events", "101")

    assert result.code == 64
    assert "at most 100" in result.err
    assert mock.stats("lago")["requests"] == 0


def test_a_bad_base_url_is_a_usage_error(run_cli: RunCli, mock: Mock, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [togai_event(1)])

    result = run_cli("ingest", "togai", str(source), "--base-url", "ftp://example")

    assert result.code == 64
    assert "base_url" in result.err


def test_an_unwritable_state_path_is_a_usage_error_before_sending(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [togai_event(1)])

    result = run_cli("ingest", "togai", str(source), "--state", str(tmp_path / "missing-dir" / "state.json"))

    assert result.code == 64
    assert "cannot write state file" in result.err
    assert mock.stats("togai")["requests"] == 0


@pytest.mark.parametrize("command", ["ingest", "replay"])
def test_an_unwritable_dead_letter_path_is_a_usage_error_before_sending(
    run_cli: RunCli, mock: Mock, tmp_path: Path, command: str
) -> None:
    source = write_jsonl(
        tmp_path / "events.jsonl", [togai_event(index, id=f"k-{index}") for index in range(5)]
    )
    if command == "replay":
        source = write_jsonl(
            tmp_path / "dead.jsonl",
            [
                {
                    "provider": "togai",
                    "key": f"k-{i}",
                    "status": "failed",
                    "event": togai_event(i, id=f"k-{i}"),
                }
                for i in range(5)
            ],
        )
    unwritable = tmp_path / "missing-dir" / "dead.jsonl"

    result = run_cli(command, "togai", str(source), "--dead-letter", str(unwritable))

    assert result.code == 64
    assert "dead-letter" in result.err
    assert mock.stats("togai")["requests"] == 0
    # Nothing was recorded as settled: the same command with a usable path sends every event.
    assert run_cli(command, "togai", str(source)).code == 0
    assert mock.stats("togai")["stored"] == 5


def test_a_bad_client_option_is_said_before_standard_input_is_read(tmp_path: Path) -> None:
    # A live stream on stdin may never end: the client's options are checked first. (A rate budget
    # needs a pace, and a --base-url has none by default: the client refuses the pair.)
    argv = ["ingest", "togai", "--token", "t", "--base-url", "http://127.0.0.1:9"]
    budget = f"sqlite:///{tmp_path / 'budget.db'}?key=k"
    process = subprocess.Popen(
        [sys.executable, "-m", "billing_events.cli", *argv, "--rate-budget", budget],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        code = process.wait(timeout=30)  # stdin stays open: the old order waited here for its end
    finally:
        process.kill()
        _, err = process.communicate()
    assert code == 64
    assert b"rate_budget: a shared budget needs a pace" in err
