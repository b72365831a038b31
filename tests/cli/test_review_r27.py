"""Review r27 through the CLI: Togai attributes given as a map or struct column, and `mock --max-events`.

Tests of the defects it found (each failed before its fix) and of the hostile cases that held.
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from billing_events.cli._mock import add_arguments
from billing_events.mock.server import config_from_env
from cli.conftest import Mock
from cli.support import RunCli
from cli.test_columnar import togai_table
from cli.test_mock_command import mock_command


def _with_attributes(tmp_path: Path, column: pa.Array, name: str = "usage") -> Path:
    source = tmp_path / f"{name}.parquet"
    table = togai_table(len(column)).drop_columns(["attributes", "attr.calls"])
    pq.write_table(table.append_column("attributes", column), source)
    return source


def _sent(mock: Mock) -> list[list[tuple[str, str]]]:
    return sorted(
        sorted((attribute["name"], attribute["value"]) for attribute in event["attributes"])
        for event in mock.events("togai")
    )


def test_a_map_column_with_attributes_called_name_and_value_is_sent(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    column = pa.array([[("name", 2.0), ("value", 3.0)]], pa.map_(pa.string(), pa.float64()))

    result = run_cli("ingest", "togai", str(_with_attributes(tmp_path, column)))

    assert result.code == 0, result.out + result.err
    assert _sent(mock) == [[("name", "2.0"), ("value", "3.0")]]


def test_one_attribute_struct_with_a_null_value_names_the_fix(run_cli: RunCli, tmp_path: Path) -> None:
    kind = pa.struct([("name", pa.string()), ("value", pa.string()), ("unit", pa.string())])
    single = pa.array([{"name": "calls", "value": None, "unit": "Milliseconds"}], kind)

    result = run_cli("ingest", "togai", str(_with_attributes(tmp_path, single)), "--dry-run")

    assert "one struct (name, value, unit) where a list of them is expected" in result.out


def test_one_attribute_struct_with_a_null_name_is_not_billed_as_an_attribute_called_value(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    kind = pa.struct([("name", pa.string()), ("value", pa.string()), ("unit", pa.string())])
    single = pa.array([{"name": None, "value": "3", "unit": None}], kind)

    result = run_cli("ingest", "togai", str(_with_attributes(tmp_path, single)))

    assert result.code == 1, result.out + result.err
    assert _sent(mock) == []


def test_a_map_column_with_an_empty_map_and_nulls_inside(run_cli: RunCli, mock: Mock, tmp_path: Path) -> None:
    column = pa.array([[("gb", 1e-5), ("calls", None)], [], None], pa.map_(pa.string(), pa.float64()))

    result = run_cli("ingest", "togai", str(_with_attributes(tmp_path, column)))

    assert result.code == 0, result.out + result.err
    # A null value leaves its attribute out, as a null column leaves its field out.
    assert _sent(mock) == [[], [], [("gb", "0.00001")]]


def test_a_map_column_with_a_repeated_key_is_refused_by_name(run_cli: RunCli, tmp_path: Path) -> None:
    column = pa.array([[("gb", 1.0), ("gb", 2.0)]], pa.map_(pa.string(), pa.float64()))

    result = run_cli("ingest", "togai", str(_with_attributes(tmp_path, column)), "--dry-run")

    assert result.code == 1, result.out + result.err
    assert "usage.parquet:1: attributes: the map holds the key 'gb' more than once" in result.out


def test_a_unit_column_for_an_attribute_given_only_by_the_map_is_refused(
    run_cli: RunCli, tmp_path: Path
) -> None:
    column = pa.array([[("calls", 1.0)]], pa.map_(pa.string(), pa.float64()))
    source = tmp_path / "usage.parquet"
    table = togai_table(1).drop_columns(["attributes", "attr.calls"]).append_column("attributes", column)
    pq.write_table(table.append_column("unit.calls", pa.array(["Milliseconds"])), source)

    result = run_cli("ingest", "togai", str(source), "--dry-run")

    assert result.code != 0
    assert "'unit.calls' has no matching 'attr.calls' column" in result.out + result.err


def test_max_events_none_on_the_command_line_lifts_the_limit() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)

    for text in ("none", "NONE"):
        option = parser.parse_args(["--max-events", text]).max_events
        assert config_from_env({"MOCK_MAX_EVENTS": option})[0].max_events is None
    assert (
        config_from_env({"MOCK_MAX_EVENTS": parser.parse_args(["--max-events", "7"]).max_events})[
            0
        ].max_events
        == 7
    )


def test_the_banner_names_the_store_limit() -> None:
    with mock_command("--max-events", "7654321") as served:
        served.banner()
        _, output = served.stop(signal.SIGTERM)

    assert "7654321" in output
