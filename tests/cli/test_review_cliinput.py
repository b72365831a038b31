"""Hostile review of `billing-events ingest` input formats: JSONL, CSV, Parquet (README "Input formats",
"Outcomes and exit codes", "Keys, timestamps and the state file").

The first tests are defects it found (each failed before its fix); the others pin what holds.
"""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from billing_events.cli import main
from cli.conftest import Mock
from cli.support import RunCli, report_of

UTC = dt.UTC
LAGO_OK = (
    '{"transaction_id":"%s","external_subscription_id":"sub_1","code":"api_calls","timestamp":1714560000}'
)


def problems(report: Path) -> list[tuple[int, str, str]]:
    return [(p["line"], p["status"], p["reason"]) for p in report_of(report)["problems"]]


# ---- defects ---------------------------------------------------------------------------------------


def test_a_big_integer_under_a_dotted_property_name_spoils_only_its_line(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    source = tmp_path / "usage.jsonl"
    bad = (
        '{"transaction_id":"b","external_subscription_id":"sub_1","code":"api_calls",'
        '"timestamp":1714560000,"properties":{"a.b":18446744073709551617}}'
    )
    source.write_text("\n".join([LAGO_OK % "a", bad, LAGO_OK % "c"]) + "\n")

    result = run_cli("ingest", "lago", str(source), "--report", "report.json", "--no-progress")

    assert sorted(mock.keys("lago")) == ["a", "c"], result.out + result.err
    assert result.code == 1
    [(line, status, reason)] = problems(Path("report.json"))
    assert (line, status) == (2, "invalid")
    assert "properties.a.b" in reason and "64 bits" in reason


def test_a_csv_cell_above_128_kib_in_a_row_under_1_mib_is_sent(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    note = "n" * 200_000  # 200 KB: the same event as JSONL is sent
    source = tmp_path / "usage.csv"
    source.write_text(
        "transaction_id,external_subscription_id,code,timestamp,prop.note\n"
        "t1,sub_1,api_calls,1714560000,short\n"
        f"t2,sub_1,api_calls,1714560000,{note}\n"
    )

    result = run_cli("ingest", "lago", str(source), "--report", "report.json", "--no-progress")

    assert problems(Path("report.json")) == []
    assert result.code == 0
    stored = {event["transaction_id"]: event for event in mock.events("lago")}
    assert stored["t2"]["properties"]["note"] == note


@pytest.mark.parametrize(
    ("provider", "nested", "first", "second"),
    [
        ("lago", "properties", {"gb": 5}, {"calls": 7}),
        ("togai", "dimensions", {"region": "eu-west-1"}, {"tier": "gold"}),
    ],
)
def test_a_nested_column_given_twice_stops_the_run_like_a_duplicated_csv_column(
    run_cli: RunCli, mock: Mock, tmp_path: Path, provider: str, nested: str, first: dict, second: dict
) -> None:
    if provider == "lago":
        flat = {
            "transaction_id": pa.array(["t1"]),
            "external_subscription_id": pa.array(["sub_1"]),
            "code": pa.array(["api_calls"]),
            "timestamp": pa.array([1714560000]),
        }
    else:
        flat = {
            "schemaName": pa.array(["api_calls"]),
            "timestamp": pa.array(["2024-05-01T10:00:00Z"]),
            "accountId": pa.array(["acme"]),
            "attr.calls": pa.array(["1"]),
        }
    table = pa.Table.from_arrays(
        [*flat.values(), pa.array([first]), pa.array([second])], names=[*flat, nested, nested]
    )
    source = tmp_path / "usage.parquet"
    pq.write_table(table, source)

    result = run_cli("ingest", provider, str(source), "--no-progress")

    assert mock.stats(provider)["requests"] == 0  # today: sent, with only the second column's fields
    assert result.code == 64
    assert nested in result.err and "twice" in result.err


def test_a_csv_written_with_comma_space_is_not_sent_with_padded_values(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    source = tmp_path / "usage.csv"
    source.write_text(
        "transaction_id, external_subscription_id, code, prop.region\nt1, sub_1, api_calls, eu-west-1\n"
    )

    result = run_cli("ingest", "lago", str(source), "--state", "s.sqlite", "--no-progress")

    padded = [
        event
        for event in mock.events("lago")
        if event["code"] != event["code"].strip()
        or event["external_subscription_id"] != event["external_subscription_id"].strip()
    ]
    # Either the cells are read as the header is (stripped), or the run refuses the file: never an
    # event whose code names no billable metric because of a space.
    assert padded == [], result.out


def test_a_number_beyond_the_float_range_is_refused_by_field(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    source = tmp_path / "usage.jsonl"
    bad = (
        '{"transaction_id":"b","external_subscription_id":"sub_1","code":"api_calls",'
        '"timestamp":1714560000,"properties":{"gb":1e400}}'
    )
    source.write_text("\n".join([LAGO_OK % "a", bad]) + "\n")

    result = run_cli("ingest", "lago", str(source), "--report", "report.json", "--no-progress")

    assert result.code == 1
    assert sorted(mock.keys("lago")) == ["a"]
    [(line, status, reason)] = problems(Path("report.json"))
    assert (line, status) == (2, "invalid")
    assert "properties.gb" in reason
    assert "not valid JSON" not in reason


def test_a_zero_byte_csv_has_no_header_and_exits_64(run_cli: RunCli, mock: Mock, tmp_path: Path) -> None:
    blank = tmp_path / "blank.csv"
    blank.write_text("\n")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")

    assert run_cli("ingest", "lago", str(blank), "--no-progress").code == 64
    result = run_cli("ingest", "lago", str(empty), "--no-progress")

    assert result.code == 64, result.out


# ---- what holds ------------------------------------------------------------------------------------


def test_togai_csv_number_and_timestamp_spellings_are_rejected_by_field_and_rule(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    good = "api,2024-05-01T10:00:00Z,acme,{value},,eu\n"
    rows = {
        "1_000": "event.attributes[0].value",
        ".5": "event.attributes[0].value",
        "1e3": "event.attributes[0].value",
        "NaN": "event.attributes[0].value",
        '"1,5"': "event.attributes[0].value",
    }
    stamps = ["2024-05-01T10:00:00", "2024-05-01", "1714560000", "2024-05-01T10:00:00+25:00"]
    lines = [good.format(value=value) for value in rows]
    lines += [f"api,{stamp},acme,1,,eu\n" for stamp in stamps]
    lines += [good.format(value="-0"), "api,2024-05-01T10:00:00.123456789+05:30,acme,007,Seconds,eu\n"]
    source = tmp_path / "usage.csv"
    source.write_text("schemaName,timestamp,accountId,attr.calls,unit.calls,dim.region\n" + "".join(lines))

    result = run_cli("ingest", "togai", str(source), "--report", "report.json", "--no-progress")

    assert result.code == 1
    found = problems(Path("report.json"))
    assert [line for line, _, _ in found] == list(range(2, 11))
    assert all(status == "rejected" for _, status, _ in found)
    assert all(reason.startswith("event.attributes[0].value: ") for _, _, reason in found[:5])
    assert all(reason.startswith("event.timestamp: ") for _, _, reason in found[5:])
    stored = sorted((e["attributes"][0]["value"], e["timestamp"]) for e in mock.events("togai"))
    assert stored == [("-0", "2024-05-01T10:00:00Z"), ("007", "2024-05-01T10:00:00.123456789+05:30")]


def test_parquet_types_become_togai_fields_and_bad_rows_are_named(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    table = pa.table(
        {
            "schemaName": pa.array(["api"] * 4).dictionary_encode(),
            "timestamp": pa.array(
                [dt.datetime(2024, 5, 1, 10, tzinfo=UTC)] * 4, pa.timestamp("ms", "+05:30")
            ),
            "accountId": pa.array(["acme", None, "acme", "acme"], pa.large_string()),
            "attr.calls": pa.array(
                [Decimal("-0"), Decimal("1"), Decimal("1E+5"), None], pa.decimal128(12, 2)
            ),
            "attr.f": pa.array([1e-05, 1.0, float("nan"), None], pa.float64()),
            "dim.region": pa.array(["eu", "eu", "eu", None]).dictionary_encode(),
        }
    )
    source = tmp_path / "usage.parquet"
    pq.write_table(table, source)

    result = run_cli("ingest", "togai", str(source), "--report", "report.json", "--no-progress")

    assert result.code == 1
    found = problems(Path("report.json"))
    assert [(line, status) for line, status, _ in found] == [(3, "invalid"), (2, "rejected")]
    assert found[0][2].startswith("attr.f: nan")
    assert found[1][2] == "event.accountId: is required"
    events = sorted(mock.events("togai"), key=lambda e: len(e["attributes"]), reverse=True)
    assert [e["timestamp"] for e in events] == ["2024-05-01T10:00:00Z"] * 2
    assert events[0]["attributes"] == [{"name": "calls", "value": "0.00"}, {"name": "f", "value": "0.00001"}]
    assert events[1] == {**events[1], "attributes": [], "dimensions": {}}  # nulls leave their fields out


def test_a_naive_parquet_timestamp_makes_only_its_row_invalid_naming_the_column(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    table = pa.table(
        {
            "external_subscription_id": ["sub_1", "sub_1"],
            "code": ["api_calls", "api_calls"],
            "transaction_id": ["t1", "t2"],
            "timestamp": pa.array([dt.datetime(2024, 5, 1, 10), None], pa.timestamp("s")),
        }
    )
    source = tmp_path / "usage.parquet"
    pq.write_table(table, source)

    result = run_cli("ingest", "lago", str(source), "--report", "report.json", "--no-progress")

    assert result.code == 1
    [(line, status, reason)] = problems(Path("report.json"))
    assert (line, status) == (1, "invalid") and reason.startswith(
        "timestamp: a timestamp without a time zone"
    )
    assert mock.keys("lago") == ["t2"]  # the null timestamp is stamped by the CLI, as a missing one


def test_csv_on_stdin_needs_state_for_lines_without_a_timestamp(mock: Mock, tmp_path: Path) -> None:
    data = (
        "\ufefftransaction_id,external_subscription_id,code,timestamp\n"
        "t1,sub_1,api_calls,1714560000\nt2,sub_1,api_calls,\n"
    ).encode()

    without = main(
        ["ingest", "lago", "-", "--format", "csv", "--no-progress", "--report", "r1.json"],
        stdin=io.BytesIO(data),
    )
    assert without == 1
    assert [(line, status) for line, status, _ in problems(Path("r1.json"))] == [(3, "invalid")]
    assert mock.keys("lago") == ["t1"]

    with_state = main(
        ["ingest", "lago", "-", "--format", "csv", "--state", "s.sqlite", "--no-progress"],
        stdin=io.BytesIO(data),
    )
    assert with_state == 0
    assert sorted(mock.keys("lago")) == ["t1", "t2"]


def test_a_long_line_and_a_broken_quote_spoil_only_their_own_lines(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    source = tmp_path / "usage.csv"
    source.write_text(
        "transaction_id,external_subscription_id,code,timestamp,prop.x\n"
        "t1,sub_1,api_calls,1714560000,1\n"
        f"t2,sub_1,api_calls,1714560000,{'z' * (1 << 20)}\n"
        't3,sub_1,api_calls,1714560000,"multi\n'
        'line",x\n'
        't4,sub_1,api_calls,1714560000,"a,""b"""\n'
    )

    result = run_cli("ingest", "lago", str(source), "--report", "report.json", "--no-progress")

    assert result.code == 1
    found = problems(Path("report.json"))
    assert [(line, status) for line, status, _ in found] == [(3, "invalid"), (4, "invalid"), (5, "invalid")]
    assert "1,048,576" in found[0][2] and "unterminated quote" in found[1][2]
    stored = {e["transaction_id"]: e["properties"] for e in mock.events("lago")}
    assert stored == {"t1": {"x": "1"}, "t4": {"x": 'a,"b"'}}
