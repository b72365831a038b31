"""The command line's pace: `--max-requests-per-second`, and the pace on the progress line."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from billing_events import Stats
from billing_events.cli import main
from billing_events.cli._display import pace_note

from .conftest import GROUP, base_url
from .workers import make_events


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
        argv = [
            "ingest",
            "togai",
            str(source),
            "--base-url",
            base_url(server, "togai"),
            "--token",
            "test-token",
        ]
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
