"""The command line's pace: `--max-requests-per-second`, and the pace on the progress line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from billing_events import Stats
from billing_events.cli import main
from billing_events.cli._display import pace_note

from .conftest import GROUP, base_url
from .workers import make_events


def ingest_argv(server: str, source: Path) -> list[str]:
    return ["ingest", "togai", str(source), "--base-url", base_url(server, "togai"), "--token", "test-token"]


def ingest(server: str, tmp_path: Path, *extra: str) -> tuple[int, int, int]:
    """(exit code, accepted, throttled) of one ingest of 120 Togai events in 60 requests."""
    tmp_path.mkdir()
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in make_events("togai", 0, 120)))
    with httpx.Client(base_url=server, timeout=10) as admin:
        admin.post("/_mock/reset").raise_for_status()
        admin.put(
            "/_mock/rate_limits", json={"enabled": True, "limits": {GROUP["togai"]: 40}}
        ).raise_for_status()
        argv = ingest_argv(server, source)
        code = main([*argv, "--batch-events", "2", "--no-progress", "--state", str(tmp_path / "s"), *extra])
        seconds = admin.get("/_mock/rate_limits").json()["seconds"].values()
        admin.put("/_mock/rate_limits", json={"enabled": False}).raise_for_status()
    counts = [groups[GROUP["togai"]] for groups in seconds if GROUP["togai"] in groups]
    return code, sum(c["accepted"] for c in counts), sum(c["throttled"] for c in counts)


def test_the_option_paces_the_cli_to_the_budget(server: str, tmp_path: Path) -> None:
    assert ingest(server, tmp_path / "paced", "--max-requests-per-second", "40") == (0, 60, 0)
    # A --base-url has no default pace: the same run unpaced meets the mock's limit.
    code, accepted, throttled = ingest(server, tmp_path / "unpaced")
    assert (code, accepted) == (0, 60)
    assert throttled > 0


@pytest.mark.parametrize("bad", ["0", "-3", "fast"])
def test_a_bad_pace_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["ingest", "togai", "-", "--token", "t", "--max-requests-per-second", bad])
    assert code == 64  # EX_USAGE
    assert "--max-requests-per-second" in capsys.readouterr().err


def test_the_progress_line_shows_the_pace_once_it_limits() -> None:
    assert pace_note(Stats(pace=50.0)) == ""  # paced, but nothing held back yet
    assert pace_note(Stats(pace=None, throttled=3)) == ""  # not paced
    assert pace_note(Stats(pace=40.0, budget_wait=1.5)) == "paced 40 req/s"
    assert pace_note(Stats(pace=20.0, budget_wait=1.5, throttled=2)) == "paced 20 req/s, 2 throttled"


def _side_by_side(server: str, tmp_path: Path, *extra: str) -> tuple[list[int], int, int]:
    """Two ingests at once, each of 120 Togai events in 60 requests, each paced to the whole budget."""
    runs = []
    for name in ("one", "two"):
        folder = tmp_path / name
        folder.mkdir(parents=True)
        source = folder / "events.jsonl"
        events = make_events("togai", 0 if name == "one" else 1000, 120)
        source.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in events))
        argv = ingest_argv(server, source)
        options = ["--batch-events", "2", "--max-requests-per-second", "40", "--no-progress"]
        runs.append([*argv, *options, "--state", str(folder / "state"), *extra])
    with httpx.Client(base_url=server, timeout=10) as admin:
        admin.post("/_mock/reset").raise_for_status()
        admin.put(
            "/_mock/rate_limits", json={"enabled": True, "limits": {GROUP["togai"]: 40}}
        ).raise_for_status()
        processes = [
            subprocess.Popen([sys.executable, "-m", "billing_events.cli", *argv], stdout=subprocess.DEVNULL)
            for argv in runs
        ]
        codes = [process.wait(120) for process in processes]
        seconds = admin.get("/_mock/rate_limits").json()["seconds"].values()
        admin.put("/_mock/rate_limits", json={"enabled": False}).raise_for_status()
    counts = [groups[GROUP["togai"]] for groups in seconds if GROUP["togai"] in groups]
    return codes, sum(c["accepted"] for c in counts), sum(c["throttled"] for c in counts)


def test_ingests_side_by_side_share_the_rate_budget_they_are_given(server: str, tmp_path: Path) -> None:
    budget = f"sqlite:///{tmp_path / 'budget.db'}?key=togai-test"
    assert _side_by_side(server, tmp_path / "shared", "--rate-budget", budget) == ([0, 0], 120, 0)
    # Each paced alone, the two runs together ask for twice the budget.
    codes, accepted, throttled = _side_by_side(server, tmp_path / "alone")
    assert (codes, accepted) == ([0, 0], 120)
    assert throttled > 0


def test_a_rate_budget_without_a_pace_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    source = tmp_path / "events.jsonl"
    source.write_bytes(b"".join(orjson.dumps(event) + b"\n" for event in make_events("togai", 0, 2)))
    budget = f"sqlite:///{tmp_path / 'budget.db'}?key=k"
    argv = ["ingest", "togai", str(source), "--token", "t", "--base-url", "http://127.0.0.1:9"]
    code = main([*argv, "--state", str(tmp_path / "state"), "--rate-budget", budget])
    assert code == 64
    assert "rate_budget: a shared budget needs a pace" in capsys.readouterr().err
