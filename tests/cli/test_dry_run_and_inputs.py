"""Reading JSONL and CSV input, and ``--dry-run``, which checks every line and sends nothing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from billing_events.cli import main
from cli.conftest import Mock
from cli.support import RunCli, lago_event, togai_event, write_jsonl

TOGAI_CSV = """\
schemaName,id,timestamp,accountId,attr.calls,attr.duration,unit.duration,dim.region,dim.plan
api_calls,,2024-05-01T10:00:00Z,acme,1,12.5,Milliseconds,eu-west-1,growth
api_calls,evt-2,2024-05-01T10:00:01Z,globex,3,,,us-east-1,
"""

LAGO_CSV = """\
transaction_id,external_subscription_id,code,timestamp,precise_total_amount_cents,prop.gb,prop.region
,sub_acme,storage_gb,1714557600,,12.5,eu-west-1
txn-2,sub_globex,storage_gb,1714557601.250,1234.56,,
"""


def test_togai_csv_columns_become_event_fields(run_cli: RunCli, mock: Mock, tmp_path: Path) -> None:
    source = tmp_path / "usage.csv"
    source.write_text(TOGAI_CSV)

    result = run_cli("ingest", "togai", str(source))

    assert result.code == 0, result.out + result.err
    first, second = sorted(mock.events("togai"), key=lambda event: event["accountId"])
    assert first["schemaName"] == "api_calls"
    assert first["accountId"] == "acme"
    assert first["timestamp"] == "2024-05-01T10:00:00Z"
    assert first["attributes"] == [
        {"name": "calls", "value": "1"},
        {"name": "duration", "value": "12.5", "unit": "Milliseconds"},
    ]
    assert first["dimensions"] == {"region": "eu-west-1", "plan": "growth"}
    assert first["id"]  # assigned by the CLI: the cell was empty
    assert second["id"] == "evt-2"
    assert second["attributes"] == [{"name": "calls", "value": "3"}]
    assert second["dimensions"] == {"region": "us-east-1"}


def test_lago_csv_columns_become_event_fields(run_cli: RunCli, mock: Mock, tmp_path: Path) -> None:
    source = tmp_path / "usage.csv"
    source.write_text(LAGO_CSV)

    result = run_cli("ingest", "lago", str(source))

    assert result.code == 0, result.out + result.err
    stored = {event["external_subscription_id"]: event for event in mock.events("lago")}
    acme, globex = stored["sub_acme"], stored["sub_globex"]
    assert acme["code"] == "storage_gb"
    assert acme["properties"] == {"gb": "12.5", "region": "eu-west-1"}
    assert acme["timestamp"].startswith("2024-05-01T10:00:00")
    assert acme["transaction_id"]
    assert globex["transaction_id"] == "txn-2"
    assert globex["precise_total_amount_cents"] == "1234.56"
    assert globex["timestamp"].startswith("2024-05-01T10:00:01.25")


@pytest.mark.parametrize(
    ("header", "complaint"),
    [
        ("schemaName,timestamp,accountId,colour", "unknown column 'colour'"),
        ("schemaName,timestamp,attr.calls", "missing column 'accountId'"),
        ("schemaName,timestamp,accountId,unit.calls", "no matching 'attr.calls'"),
    ],
)
def test_a_bad_csv_header_stops_before_sending(
    run_cli: RunCli, mock: Mock, tmp_path: Path, header: str, complaint: str
) -> None:
    source = tmp_path / "usage.csv"
    source.write_text(f"{header}\n" + "x," * header.count(",") + "x\n")

    result = run_cli("ingest", "togai", str(source))

    assert result.code == 64
    assert complaint in result.err
    assert mock.stats("togai")["requests"] == 0


def test_dry_run_reports_every_bad_line_by_number_and_sends_nothing(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    source = write_jsonl(
        tmp_path / "events.jsonl",
        [
            togai_event(1),
            "{not json",
            togai_event(3, timestamp="yesterday"),
            "",
            '["an", "array"]',
            togai_event(6, attributes=[{"name": "calls", "value": "1,5"}]),
            togai_event(7),
        ],
    )

    result = run_cli("ingest", "togai", str(source), "--dry-run")

    assert result.code == 1
    reported = [line.split(":")[1] for line in result.out.splitlines() if line.startswith(f"{source}:")]
    assert reported == ["2", "3", "5", "6"]
    assert "timestamp" in result.out
    assert "attributes[0].value" in result.out
    assert "checked 6 events" in result.out
    assert mock.stats("togai")["requests"] == 0
    assert not (tmp_path / "events.jsonl.togai.state.json").exists()


def test_dry_run_of_a_clean_file_exits_0_without_a_token(
    run_cli: RunCli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("LAGO_API_KEY", raising=False)
    source = write_jsonl(tmp_path / "events.jsonl", [lago_event(index) for index in range(50)])

    result = run_cli("ingest", "lago", str(source), "--dry-run")

    assert result.code == 0
    assert "checked 50 events" in result.out
    assert "no problems" in result.out


def test_dry_run_flags_a_key_used_twice_within_its_scope(run_cli: RunCli, tmp_path: Path) -> None:
    source = write_jsonl(
        tmp_path / "events.jsonl",
        [
            lago_event(1, transaction_id="t-1", external_subscription_id="sub_a"),
            lago_event(2, transaction_id="t-1", external_subscription_id="sub_b"),
            lago_event(3, transaction_id="t-1", external_subscription_id="sub_a"),
        ],
    )

    result = run_cli("ingest", "lago", str(source), "--dry-run")

    assert result.code == 1
    # Lago keys are unique per subscription: line 2 is fine, line 3 repeats line 1.
    problems = [line for line in result.out.splitlines() if line.startswith(f"{source}:")]
    assert problems == [
        f"{source}:3: transaction_id: 't-1' is also the key of line 1, a different event;"
        " Lago would keep only one of them"
    ]


def test_csv_rows_are_numbered_by_their_line_in_the_file(run_cli: RunCli, tmp_path: Path) -> None:
    source = tmp_path / "usage.csv"
    source.write_text(
        "external_subscription_id,code,timestamp\n"
        "sub_1,api_calls,1714557600\n"
        "\n"
        "sub_1,api_calls,not-a-time\n"
        "sub_1,api_calls\n"
    )

    result = run_cli("ingest", "lago", str(source), "--dry-run")

    assert result.code == 1
    assert f"{source}:4: event.timestamp" in result.out
    assert f"{source}:5: expected 3 columns, got 2" in result.out


def test_stdin_is_read_when_no_file_is_given(
    mock: Mock, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = b"".join(
        write_jsonl(tmp_path / "e.jsonl", [togai_event(index)]).read_bytes() for index in range(3)
    )

    code = main(["ingest", "togai"], stdin=io.BytesIO(lines))

    assert code == 0, capsys.readouterr()
    assert mock.stats("togai")["stored"] == 3


def test_the_same_stdin_bytes_get_the_same_keys(mock: Mock, capsys: pytest.CaptureFixture[str]) -> None:
    content = b"".join(
        write_jsonl(Path("one.jsonl"), [togai_event(index)]).read_bytes() for index in range(4)
    )

    assert main(["ingest", "togai", "-"], stdin=io.BytesIO(content)) == 0
    assert main(["ingest", "togai", "-"], stdin=io.BytesIO(content)) == 0

    stats = mock.stats("togai")
    assert stats["stored"] == 4
    assert stats["duplicates"] == 4
