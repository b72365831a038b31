"""Review r31 of the CLI: columnar values pyarrow cannot convert, float32 columns, option errors' size."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli.conftest import Mock
from cli.support import RunCli, report_of, write_jsonl

START = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
# 10**13 seconds after 1970 is past year 9999: pyarrow cannot give it as a datetime (OverflowError).
BEYOND_YEAR_9999 = 10**13


def _columns(provider: str, stamps: pa.Array) -> dict[str, pa.Array | list[object]]:
    rows = len(stamps)
    if provider == "togai":
        return {
            "schemaName": ["api_calls"] * rows,
            "timestamp": stamps,
            "accountId": ["acme"] * rows,
            "attr.calls": pa.array(list(range(1, rows + 1)), pa.int64()),
        }
    return {
        "external_subscription_id": ["sub_1"] * rows,
        "code": ["api_calls"] * rows,
        "timestamp": stamps,
        "prop.calls": pa.array(list(range(1, rows + 1)), pa.int64()),
    }


@pytest.mark.parametrize("provider", ["togai", "lago"])
def test_a_timestamp_past_year_9999_makes_only_its_row_invalid(
    run_cli: RunCli, mock: Mock, tmp_path: Path, provider: str
) -> None:
    """A user sees: one row of a Parquet file holds a timestamp past year 9999 (a sentinel, a unit
    mix-up) and `billing-events ingest` dies with an OverflowError traceback (exit 1, which the README
    reserves for "some lines invalid or rejected"), before any row is sent and without a report.
    They should see: that row `invalid`, naming the `timestamp` column, and the other rows delivered,
    as the README says of a value that cannot be converted ("makes its row invalid with the column
    named") and as a naive or nanosecond timestamp already does."""
    first = int(START.timestamp())
    stamps = pa.array([first, BEYOND_YEAR_9999, first + 2], pa.timestamp("s", "UTC"))
    source = tmp_path / "usage.parquet"
    pq.write_table(pa.table(_columns(provider, stamps)), source)
    report = tmp_path / "report.json"

    result = run_cli("ingest", provider, str(source), "--report", str(report))

    assert result.code == 1, result.out + result.err
    assert len(mock.events(provider)) == 2
    written = report_of(report)
    assert written["counts"]["delivered"] == 2
    assert written["counts"]["invalid"] == 1
    [problem] = written["problems"]
    assert problem["line"] == 2
    assert problem["reason"].startswith("timestamp:")


@pytest.mark.xfail(
    strict=True,
    reason="documented limit (README, Input formats): a float32 goes as the double it is, so that keys derived"
    " from such rows stay the same for runs resumed under a newer release",
)
@pytest.mark.parametrize("provider", ["togai", "lago"])
def test_a_float32_column_is_sent_with_the_digits_it_holds(
    run_cli: RunCli, mock: Mock, tmp_path: Path, provider: str
) -> None:
    """A user sees: a Parquet file written from a float32 column (pandas' astype("float32"), Spark's
    FLOAT) with 0.1 and 12.3 bills Togai an attribute of "0.10000000149011612" and Lago a
    precise_total_amount_cents of "12.300000190734863" (and a property 0.10000000149011612): amounts no
    tool shows for that file (pyarrow's own cast to string, numpy and pandas print 0.1 and 12.3). They
    should see the shortest digits that read back as the stored float32, as the README promises for
    floats sent as text ("0.00001, not 1e-05")."""
    stamps = pa.array([START], pa.timestamp("s", "UTC"))
    columns = _columns(provider, stamps)
    small = pa.array([0.1], pa.float32())
    if provider == "togai":
        columns["attr.gb"] = small
    else:
        columns["prop.gb"] = small
        columns["precise_total_amount_cents"] = pa.array([12.3], pa.float32())
    source = tmp_path / "usage.parquet"
    pq.write_table(pa.table(columns), source)

    result = run_cli("ingest", provider, str(source))

    assert result.code == 0, result.out + result.err
    [event] = mock.events(provider)
    if provider == "togai":
        gb = {attribute["name"]: attribute["value"] for attribute in event["attributes"]}["gb"]
        assert gb == "0.1"
    else:
        assert event["precise_total_amount_cents"] == "12.3"
        assert event["properties"]["gb"] == 0.1


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--timeout", "-" + "0" * 100_000 + "1"),
        ("--retry-deadline", "-" + "0" * 100_000 + "1"),
        ("--max-requests-per-second", "-" + "0" * 100_000 + "1"),
        ("--max-in-flight", "-" + "9" * 4_000),
    ],
)
def test_an_option_refused_for_its_range_is_quoted_cut_short(
    run_cli: RunCli, tmp_path: Path, option: str, value: str
) -> None:
    """A user sees: a number refused for its range (a negative timeout written with many digits, from a
    script or a template gone wrong) is echoed whole on stderr, 100 KB in one line. They should see a
    short message naming the option and the rule, with the value cut short, as the same options
    already do for a value that is not a number, and as the README's "no kept/printed text grows with
    one bad value" asks."""
    source = write_jsonl(tmp_path / "usage.jsonl", [])

    result = run_cli("ingest", "lago", str(source), "--dry-run", option, value)

    assert result.code == 64
    assert option in result.err
    assert len(result.err) < 2_000, f"{len(result.err):,} characters on stderr"
