"""Files that are broken in the ways real files are (issue 9 items 6, 8, 9 and 12).

Every row ends counted, a bad row is an invalid line with its number, and no
bad value makes the output grow with its size.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from cli.conftest import Mock
from cli.support import RunCli, lago_event, report_of, togai_event, write_jsonl

LAGO_HEADER = "external_subscription_id,code,timestamp,prop.region\n"


def lago_rows(count: int) -> list[str]:
    return [f"sub_{index % 5},api_calls,{1714557600 + index},eu-west-1\n" for index in range(count)]


def test_an_unterminated_quote_spoils_only_its_own_row(run_cli: RunCli, mock: Mock, tmp_path: Path) -> None:
    """2,000 rows with an open quote on line 12 (the issue had 20,000 rows; scaled down to keep it fast)."""
    rows = lago_rows(2000)
    rows[10] = 'sub_1,api_calls,1714557600,"eu-west-1\n'  # line 12: the quote never closes
    source = tmp_path / "usage.csv"
    source.write_text(LAGO_HEADER + "".join(rows))

    result = run_cli("ingest", "lago", str(source), "--report", "report.json")

    assert result.code == 1
    assert mock.stats("lago")["stored"] == 1999
    report = report_of(Path("report.json"))
    assert report["records"] == 2000
    assert report["counts"]["invalid"] == 1
    assert [(p["line"], p["status"]) for p in report["problems"]] == [(12, "invalid")]
    assert "unterminated quote" in report["problems"][0]["reason"]


def test_invalid_utf8_is_an_invalid_line_and_a_rerun_moves_past_it(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    rows = [row.encode() for row in lago_rows(50)]
    rows[4] = b"sub_1,api_calls,1714557600,eu-\xff\xfewest\n"  # line 6
    source = tmp_path / "usage.csv"
    source.write_bytes(LAGO_HEADER.encode() + b"".join(rows))

    first = run_cli("ingest", "lago", str(source), "--report", "report.json")

    assert first.code == 1, first.out + first.err
    assert mock.stats("lago")["stored"] == 49
    problems = report_of(Path("report.json"))["problems"]
    assert [(p["line"], p["status"]) for p in problems] == [(6, "invalid")]
    assert "UTF-8" in problems[0]["reason"]
    requests = mock.stats("lago")["requests"]

    again = run_cli("ingest", "lago", str(source), "--report", "report.json")

    assert again.code == 1
    assert report_of(Path("report.json"))["records"] == 50
    assert mock.stats("lago")["requests"] == requests  # nothing left to send, and no stop at line 6


def test_a_csv_header_that_is_not_utf8_stops_the_run(run_cli: RunCli, mock: Mock, tmp_path: Path) -> None:
    source = tmp_path / "usage.csv"
    source.write_bytes(b"external_subscription_id,co\xffde\n" + "".join(lago_rows(3)).encode())

    result = run_cli("ingest", "lago", str(source))

    assert result.code == 64
    assert "header" in result.err
    assert mock.stats("lago")["requests"] == 0


def test_an_integer_beyond_64_bits_is_refused_by_name(run_cli: RunCli, mock: Mock, tmp_path: Path) -> None:
    big = 2**64 + 1
    lines: list[dict[str, Any] | str] = [lago_event(index) for index in range(5)]
    lines[2] = orjson.dumps(lago_event(2)).decode().replace('"eu-west-1"', str(big))
    source = write_jsonl(tmp_path / "events.jsonl", lines)

    result = run_cli("ingest", "lago", str(source), "--report", "report.json")

    assert result.code == 1
    assert mock.stats("lago")["stored"] == 4
    assert not any(isinstance(event["properties"]["region"], float) for event in mock.events("lago"))
    (problem,) = report_of(Path("report.json"))["problems"]
    assert problem["line"] == 3
    assert problem["reason"].startswith("properties.region: integer 18446744073709551617")
    assert "64 bits" in problem["reason"]


@pytest.mark.parametrize("provider", ["togai", "lago"])
def test_a_jsonl_file_may_start_with_a_bom(
    run_cli: RunCli, mock: Mock, tmp_path: Path, provider: str
) -> None:
    source = write_jsonl(
        tmp_path / "events.jsonl",
        [togai_event(i) if provider == "togai" else lago_event(i) for i in range(3)],
    )
    source.write_bytes(b"\xef\xbb\xbf" + source.read_bytes())

    result = run_cli("ingest", provider, str(source))

    assert result.code == 0, result.out + result.err
    assert mock.stats(provider)["stored"] == 3


def test_huge_lines_and_values_leave_the_summary_small(run_cli: RunCli, mock: Mock, tmp_path: Path) -> None:
    """An 8 MB line and a 600 kB rejected value among good lines (the issue also had a 100 MB line)."""
    huge_line = orjson.dumps(togai_event(1, dimensions={"blob": "x" * 8_000_000})).decode()
    rejected = togai_event(2, schemaName="s" * 600_000)  # far above the 50-character limit
    source = write_jsonl(tmp_path / "events.jsonl", [togai_event(0), huge_line, rejected, togai_event(3)])
    started = time.monotonic()

    result = run_cli("ingest", "togai", str(source), "--report", "report.json")

    elapsed = time.monotonic() - started
    assert result.code == 1
    assert mock.stats("togai")["stored"] == 2
    problems = report_of(Path("report.json"))["problems"]
    assert [(p["line"], p["status"]) for p in problems] == [(2, "invalid"), (3, "rejected")]
    assert "8,000" in problems[0]["reason"]  # the line's size, not its content
    assert all(len(p["reason"]) < 400 for p in problems)
    assert len(result.out) + len(result.err) < 20_000
    assert elapsed < 60  # the issue saw 53 s for one 8 MB line; a generous bound, not a timing target


def test_dry_run_output_is_bounded_too(run_cli: RunCli, tmp_path: Path) -> None:
    source = write_jsonl(
        tmp_path / "events.jsonl",
        [togai_event(1, id="k" * 300_000), togai_event(2, id="k" * 300_000, schemaName="s" * 300_000)],
    )

    result = run_cli("ingest", "togai", str(source), "--dry-run")

    assert result.code == 1
    assert len(result.out) < 5_000
