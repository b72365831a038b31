"""Parquet and Arrow IPC input: typed and nested columns, resume, dry-run, and a missing pyarrow."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import subprocess
import sys
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest

from cli.conftest import Mock
from cli.support import RunCli
from cli.test_resume import crash_on_call

START = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)


def togai_table(rows: int) -> pa.Table:
    return pa.table(
        {
            "schemaName": ["api_calls"] * rows,
            "timestamp": pa.array(
                [START + dt.timedelta(seconds=i) for i in range(rows)], pa.timestamp("ms", "UTC")
            ),
            "accountId": [f"acct_{i % 7}" for i in range(rows)],
            "attr.calls": pa.array([1 + i % 3 for i in range(rows)], pa.int64()),
            "attributes": [
                [{"name": "duration", "value": f"{i}.5", "unit": "Milliseconds"}] for i in range(rows)
            ],
            "dimensions": pa.array(
                [[("region", ["eu-west-1", "us-east-1"][i % 2])] for i in range(rows)],
                pa.map_(pa.string(), pa.string()),
            ),
        }
    )


def lago_table(rows: int) -> pa.Table:
    return pa.table(
        {
            "external_subscription_id": [f"sub_{i % 5}" for i in range(rows)],
            "code": ["api_calls"] * rows,
            "timestamp": pa.array(
                [START + dt.timedelta(seconds=i) for i in range(rows)], pa.timestamp("s", "UTC")
            ),
            "prop.gb": pa.array([i / 4 for i in range(rows)], pa.float64()),
            "properties": [
                {"region": ["eu-west-1", "us-east-1"][i % 2], "calls": i % 3} for i in range(rows)
            ],
        }
    )


def table_for(provider: str, rows: int) -> pa.Table:
    return togai_table(rows) if provider == "togai" else lago_table(rows)


def write_arrow(path: Path, table: pa.Table) -> Path:
    with pa.OSFile(str(path), "wb") as sink, pyarrow.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=7)
    return path


def togai_attribute_values(mock: Mock, name: str) -> set[object]:
    """The values the mock's Togai stored for the attribute ``name``, over all its events."""
    return {
        attribute["value"]
        for event in mock.events("togai")
        for attribute in event["attributes"]
        if attribute["name"] == name
    }


def test_typed_and_nested_parquet_columns_become_togai_fields(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    source = tmp_path / "usage.parquet"
    pq.write_table(togai_table(3), source)

    result = run_cli("ingest", "togai", str(source))

    assert result.code == 0, result.out + result.err
    first = min(mock.events("togai"), key=lambda event: event["timestamp"])
    assert first["timestamp"] == "2024-05-01T12:00:00Z"
    assert first["accountId"] == "acct_0"
    assert first["attributes"] == [
        {"name": "duration", "value": "0.5", "unit": "Milliseconds"},
        {"name": "calls", "value": "1"},
    ]
    assert first["dimensions"] == {"region": "eu-west-1"}
    assert first["id"].startswith("be-")


def test_an_arrow_ipc_file_becomes_lago_events_with_typed_properties(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    source = write_arrow(tmp_path / "usage.arrow", lago_table(20))

    result = run_cli("ingest", "lago", str(source))

    assert result.code == 0, result.out + result.err
    stored = {event["timestamp"]: event for event in mock.events("lago")}
    assert len(stored) == 20
    second = stored[min(stored)]
    assert second["properties"] == {"region": "eu-west-1", "calls": 0, "gb": 0.0}


@pytest.mark.parametrize("provider", ["togai", "lago"])
def test_a_parquet_ingest_interrupted_and_resumed_stores_every_row_once(
    run_cli: RunCli, mock: Mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    source = tmp_path / "usage.parquet"
    pq.write_table(table_for(provider, 95), source, row_group_size=20)
    options = ("--batch-events", "10", "--max-in-flight", "1", "--report", "report.json")
    mock.faults(rate_503=0.1, rate_lost_response=0.1, seed=7)
    with crash_on_call(monkeypatch, 4, send_first=True):
        crashed = run_cli("ingest", provider, str(source), *options)
    assert crashed.code == 2
    assert "Run the same command again to resume" in crashed.err

    resumed = run_cli("ingest", provider, str(source), *options)

    assert resumed.code == 0, resumed.out + resumed.err
    report: dict[str, Any] = orjson.loads(Path("report.json").read_bytes())
    assert report["records"] == 95
    assert 0 < report["records_settled_earlier"] < 95
    keys = mock.keys(provider)
    assert len(keys) == len(set(keys)) == 95


def test_bad_parquet_columns_stop_before_sending(run_cli: RunCli, mock: Mock, tmp_path: Path) -> None:
    source = tmp_path / "usage.parquet"
    pq.write_table(pa.table({"code": ["x"], "colour": ["red"]}), source)

    result = run_cli("ingest", "lago", str(source))

    assert result.code == 64
    assert "unknown column 'colour'" in result.err
    assert "missing column 'external_subscription_id'" in result.err
    assert mock.keys("lago") == []


def test_dry_run_numbers_bad_rows_and_names_the_column(run_cli: RunCli, tmp_path: Path) -> None:
    table = lago_table(4).append_column("prop.blob", pa.array([None, b"\x00", None, None], pa.binary()))
    source = tmp_path / "usage.parquet"
    pq.write_table(table, source)
    naive = tmp_path / "naive.parquet"
    pq.write_table(
        lago_table(2).set_column(2, "timestamp", pa.array([START.replace(tzinfo=None)] * 2)), naive
    )

    result = run_cli("ingest", "lago", str(source), "--dry-run")
    naive_result = run_cli("ingest", "lago", str(naive), "--dry-run")

    assert result.code == 1, result.out + result.err
    assert "usage.parquet:2: prop.blob: a bytes value has no JSON form" in result.out
    assert "1 with problems" in result.out
    assert "naive.parquet:1: timestamp: a timestamp without a time zone is ambiguous" in naive_result.out


def test_without_pyarrow_the_error_names_the_extra(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "usage.parquet"
    pq.write_table(lago_table(2), source)
    for name in ("pyarrow", "pyarrow.parquet", "pyarrow.ipc"):
        monkeypatch.setitem(sys.modules, name, None)

    result = run_cli("ingest", "lago", str(source), "--dry-run")

    assert result.code == 64
    assert "pip install 'billing-events[parquet]'" in result.err


def test_an_arrow_stream_and_parquet_on_stdin_are_read_too(
    run_cli: RunCli, mock: Mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = tmp_path / "usage.arrows"
    table = togai_table(12)
    with pa.OSFile(str(stream), "wb") as sink, pyarrow.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=5)
    piped = tmp_path / "piped.parquet"
    pq.write_table(togai_table(30).slice(12), piped)

    from_stream = run_cli("ingest", "togai", str(stream))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(piped.read_bytes())))
    from_stdin = run_cli("ingest", "togai", "-", "--format", "parquet")

    assert from_stream.code == 0, from_stream.out + from_stream.err
    assert from_stdin.code == 0, from_stdin.out + from_stdin.err
    assert len({event["id"] for event in mock.events("togai")}) == 30


def damaged_parquet(path: Path, rows: int, damaged_group: int) -> Path:
    """A Parquet file of row groups of 20 rows whose ``damaged_group``-th row group's pages are garbage."""
    pq.write_table(lago_table(rows), path, row_group_size=20, compression="none")
    offset = pq.ParquetFile(path).metadata.row_group(damaged_group).column(0).data_page_offset
    data = bytearray(path.read_bytes())
    data[offset + 5 : offset + 60] = b"\xff" * 55
    path.write_bytes(bytes(data))
    return path


def truncated_arrow_stream(path: Path, rows: int) -> tuple[Path, int]:
    """An Arrow stream of batches of 10 rows, cut short inside a batch; and how many rows it still holds."""
    sink = io.BytesIO()
    table = lago_table(rows)
    with pyarrow.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=10)
    whole = sink.getvalue()
    path.write_bytes(whole[: len(whole) * 3 // 5])
    whole_batches = 0
    with contextlib.suppress(OSError), pyarrow.ipc.open_stream(path.read_bytes()) as reader:
        for batch in reader:
            whole_batches += batch.num_rows
    return path, whole_batches


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_damaged_parquet_file_exits_64_and_names_the_file(
    run_cli: RunCli, mock: Mock, tmp_path: Path, dry_run: bool
) -> None:
    source = damaged_parquet(tmp_path / "usage.parquet", 60, damaged_group=0)

    result = run_cli("ingest", "lago", str(source), *(["--dry-run"] if dry_run else []))

    assert result.code == 64, result.out + result.err
    assert f"cannot read {source} as parquet" in result.err
    assert mock.keys("lago") == []


@pytest.mark.parametrize("damaged", ["parquet", "arrow"])
def test_rows_before_damage_mid_file_are_sent_and_the_run_exits_64(
    run_cli: RunCli, mock: Mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damaged: str
) -> None:
    # Small record batches, so that rows are read (and sent) before the damaged part is reached.
    monkeypatch.setattr("billing_events.cli._columnar.BATCH_ROWS", 10)
    if damaged == "parquet":
        source, readable = damaged_parquet(tmp_path / "usage.parquet", 60, damaged_group=1), 20
    else:
        source, readable = truncated_arrow_stream(tmp_path / "usage.arrows", 50)
        assert 0 < readable < 50
    options = ("--batch-events", "10", "--report", str(tmp_path / "report.json"))

    result = run_cli("ingest", "lago", str(source), *options)
    dry = run_cli("ingest", "lago", str(source), "--dry-run")

    assert result.code == 64, result.out + result.err
    assert f"cannot read {source} as {damaged}" in result.err
    report: dict[str, Any] = orjson.loads((tmp_path / "report.json").read_bytes())
    assert (report["counts"]["delivered"], report["finished"]) == (readable, False)
    assert len(set(mock.keys("lago"))) == readable
    assert dry.code == 64, dry.out + dry.err
    assert f"cannot read {source} as {damaged}" in dry.err


def keyed_lago_parquet(path: Path, rows: int) -> Path:
    table = lago_table(rows).append_column(
        "transaction_id", pa.array([f"tx-{index:09d}-{'k' * 40}" for index in range(rows)])
    )
    pq.write_table(table, path, row_group_size=1_000)
    return path


def dry_run_peak(run_cli: RunCli, source: Path) -> int:
    tracemalloc.start()
    try:
        result = run_cli("ingest", "lago", str(source), "--dry-run")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.code == 0, result.out + result.err
    return peak


def test_dry_run_memory_stays_flat_with_the_number_of_keys(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Keys beyond a small in-memory count move to disk (as 200,000 do by default), so 10,000 suffice.
    monkeypatch.setattr("billing_events.cli._key_conflicts.KeyRegistry.MEMORY_KEYS", 1_000)
    # The copies' counts (for the length of a derived key, as the run numbers them) move to disk alike.
    monkeypatch.setattr("billing_events._keys.Occurrences.MEMORY_DIGESTS", 1_000)
    monkeypatch.setattr("billing_events.cli._dry_run.BLOCK_RECORDS", 500, raising=False)
    monkeypatch.setattr("billing_events.cli._columnar.BATCH_ROWS", 1_000)
    small = dry_run_peak(run_cli, keyed_lago_parquet(tmp_path / "small.parquet", 2_000))
    large = dry_run_peak(run_cli, keyed_lago_parquet(tmp_path / "large.parquet", 12_000))

    # Holding every key in a dict grows by about 300 bytes a key: 3 MB for these 10,000 more.
    assert large - small < 1_000_000, (small, large)


def test_dry_run_finds_a_repeated_key_among_keys_moved_to_disk(
    run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("billing_events.cli._key_conflicts.KeyRegistry.MEMORY_KEYS", 100)
    # Rows 501..1000 repeat the keys of rows 1..500, with the same subscription (sub_<index % 5>).
    table = lago_table(1_000).append_column(
        "transaction_id", pa.array([f"tx-{index % 500}" for index in range(1_000)])
    )
    source = tmp_path / "usage.parquet"
    pq.write_table(table, source)

    result = run_cli("ingest", "lago", str(source), "--dry-run")

    assert result.code == 1
    problems = [line for line in result.out.splitlines() if line.startswith(f"{source}:")]
    assert len(problems) == 500
    assert problems[0] == (
        f"{source}:501: transaction_id: 'tx-0' is also the key of line 1, a different event;"
        " Lago would keep only one of them"
    )
    assert problems[-1].startswith(f"{source}:1000: transaction_id: 'tx-499' is also the key of line 500,")


def test_decimal_columns_are_sent_in_plain_digits_whatever_their_scale(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    # Python writes Decimal("0E-10") and Decimal("1.000E-7") in exponent form, which Togai's attribute
    # value pattern (digits, an optional fraction) refuses: a decimal(38, 10) column of small amounts.
    amounts = pa.array([Decimal(0), Decimal("0.0000001"), Decimal("12.5")], pa.decimal128(38, 10))
    togai = tmp_path / "togai.parquet"
    pq.write_table(togai_table(3).append_column("attr.amount", amounts), togai)
    lago = tmp_path / "lago.parquet"
    cents = pa.array([Decimal(0), Decimal("0.0000001"), Decimal(1000)], pa.decimal128(20, 8))
    pq.write_table(lago_table(3).append_column("precise_total_amount_cents", cents), lago)

    togai_result = run_cli("ingest", "togai", str(togai))
    lago_result = run_cli("ingest", "lago", str(lago))

    assert togai_result.code == 0, togai_result.out + togai_result.err
    assert lago_result.code == 0, lago_result.out + lago_result.err
    assert togai_attribute_values(mock, "amount") == {"0.0000000000", "0.0000001000", "12.5000000000"}
    assert len(mock.events("lago")) == 3


def test_an_empty_list_stays_a_list_and_an_empty_map_an_object(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    # pyarrow hands a map over as a list of (key, value) pairs: an empty list looks like an empty map.
    table = (
        lago_table(2)
        .drop_columns(["properties"])
        .append_column("prop.tags", pa.array([[], ["gpu"]], pa.list_(pa.string())))
        .append_column("properties", pa.array([[], [("region", "eu")]], pa.map_(pa.string(), pa.string())))
    )
    source = tmp_path / "usage.parquet"
    pq.write_table(table, source)

    result = run_cli("ingest", "lago", str(source))

    assert result.code == 0, result.out + result.err
    properties = sorted((event["properties"] for event in mock.events("lago")), key=len)
    assert properties == [{"tags": [], "gb": 0.0}, {"region": "eu", "tags": ["gpu"], "gb": 0.25}]


def test_nanosecond_timestamps_without_pandas_make_only_their_rows_bad(tmp_path: Path) -> None:
    # pyarrow gives a nanosecond value as a pandas Timestamp, and without pandas raises for the whole
    # batch. The 'parquet' extra is pyarrow alone: a run in a process where pandas cannot be imported.
    source = tmp_path / "usage.parquet"
    stamps = [1_714_564_800_000_000_000, 1_714_564_800_000_000_001, 1_714_564_801_000_000_000]
    table = pa.table(
        {
            "external_subscription_id": ["sub_1", "sub_2", "sub_3"],
            "code": ["api_calls"] * 3,
            "timestamp": pa.array(stamps, pa.timestamp("ns", "UTC")),
        }
    )
    pq.write_table(table, source)
    script = (
        "import sys\n"
        "class NoPandas:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'pandas': raise ImportError(name)\n"
        "sys.meta_path.insert(0, NoPandas())\n"
        "from billing_events.cli._main import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, "ingest", "lago", str(source), "--dry-run"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert run.returncode == 1, run.stdout + run.stderr
    assert "usage.parquet:2: timestamp: a time in nanoseconds needs pandas" in run.stdout
    assert "checked 3 events" in run.stdout and "1 with problems" in run.stdout


def test_float_attribute_values_are_sent_in_plain_digits(run_cli: RunCli, mock: Mock, tmp_path: Path) -> None:
    # Python writes 0.00001 as 1e-05 and 1e16 as 1e+16: Togai's attribute values are digits only.
    source = tmp_path / "usage.parquet"
    costs = pa.array([0.00001, 1e16, 2.5], pa.float64())
    pq.write_table(togai_table(3).append_column("attr.cost", costs), source)

    result = run_cli("ingest", "togai", str(source))

    assert result.code == 0, result.out + result.err
    assert togai_attribute_values(mock, "cost") == {"0.00001", "10000000000000000", "2.5"}


def test_togai_attributes_as_a_map_or_struct_of_name_to_value(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    # A warehouse often holds usage as map<string, double>: each entry is an attribute without a unit.
    as_map = pa.array([[("gb", 2.5), ("calls", 3)], []], pa.map_(pa.string(), pa.float64()))
    as_struct = pa.array([{"gb": 1.5, "calls": None}, {"gb": 4.0, "calls": 1}])
    for name, column in (("map", as_map), ("struct", as_struct)):
        source = tmp_path / f"{name}.parquet"
        pq.write_table(
            togai_table(2).drop_columns(["attributes", "attr.calls"]).append_column("attributes", column),
            source,
        )

        result = run_cli("ingest", "togai", str(source))

        assert result.code == 0, result.out + result.err
    assert sorted(
        sorted(
            (attribute["name"], attribute["value"], "unit" in attribute) for attribute in event["attributes"]
        )
        for event in mock.events("togai")
    ) == [
        [],
        [("calls", "1", False), ("gb", "4.0", False)],
        [("calls", "3.0", False), ("gb", "2.5", False)],
        [("gb", "1.5", False)],
    ]


def test_one_attribute_struct_outside_a_list_names_the_fix(run_cli: RunCli, tmp_path: Path) -> None:
    # Read as a map it would bill attributes called "name" and "value".
    single = pa.array([{"name": "calls", "value": "1"}, None])
    source = tmp_path / "usage.parquet"
    pq.write_table(togai_table(2).drop_columns(["attributes"]).append_column("attributes", single), source)

    result = run_cli("ingest", "togai", str(source), "--dry-run")

    assert result.code == 1, result.out + result.err
    assert (
        "usage.parquet:1: attributes: one struct (name, value, unit) where a list of them is expected"
        in result.out
    )
    assert "1 with problems" in result.out
