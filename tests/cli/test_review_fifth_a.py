"""Review (fifth reading of 24b876a): a token-refused chunk keeps its rejected lines settled."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.conftest import Mock
from cli.support import RunCli, make_event, read_jsonl, report_of, write_jsonl

NEEDS_DEV_FULL = pytest.mark.skipif(
    not Path("/dev/full").exists(), reason="needs /dev/full, a file every write to fails"
)


@NEEDS_DEV_FULL
def test_a_refused_chunk_whose_rejected_letter_was_not_written_leaves_the_line_for_the_next_run(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    lines = [make_event("togai", 0), make_event("togai", 1, timestamp="yesterday")]  # line 2: rejected
    source = write_jsonl(tmp_path / "events.jsonl", lines)

    refused = run_cli(
        "ingest",
        "togai",
        str(source),
        "--token",
        "not-the-token",
        "--dead-letter",
        "/dev/full",
        "--report",
        "refused.json",
    )
    assert refused.code == 64, refused.out + refused.err
    assert report_of(Path("refused.json"))["dead_letters_unwritten"] >= 1

    again = run_cli("ingest", "togai", str(source), "--report", "again.json")

    assert again.code == 1, again.out + again.err
    report = report_of(Path("again.json"))
    # The rejected line was settled by the refused run although its letter never reached a file.
    assert report["records_settled_earlier"] == 0, report
    letters = read_jsonl(tmp_path / "events.jsonl.togai.dead-letter.jsonl")
    assert [letter["status"] for letter in letters] == ["rejected"], letters
    assert letters[0]["event"]["timestamp"] == "yesterday"


def test_a_refused_chunk_whose_letters_were_written_keeps_its_rejected_line_settled(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    lines = [make_event("togai", 0), make_event("togai", 1, timestamp="yesterday")]
    source = write_jsonl(tmp_path / "events.jsonl", lines)
    letters_path = tmp_path / "events.jsonl.togai.dead-letter.jsonl"

    refused = run_cli("ingest", "togai", str(source), "--token", "not-the-token")
    again = run_cli("ingest", "togai", str(source), "--report", "again.json")

    assert (refused.code, again.code) == (64, 1), again.out + again.err
    assert mock.stats("togai")["stored"] == 1
    rejected = [letter for letter in read_jsonl(letters_path) if letter["status"] == "rejected"]
    assert len(rejected) == 1
