"""Parquet map and text columns where a struct or a map is expected: what the CLI says about them."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cli.support import RunCli


def test_a_map_with_one_key_twice_is_a_problem_of_its_row(run_cli: RunCli, tmp_path: Path) -> None:
    source = tmp_path / "usage.parquet"
    properties = pa.array(
        [[("region", "eu"), ("region", "us")], [("region", "eu")]], pa.map_(pa.string(), pa.string())
    )
    pq.write_table(
        pa.table(
            {
                "external_subscription_id": ["sub_1", "sub_2"],
                "code": ["api_calls"] * 2,
                "properties": properties,
            }
        ),
        source,
    )

    result = run_cli("ingest", "lago", str(source), "--dry-run")

    # Which of the two values the provider should bill is not the tool's to choose.
    assert result.code == 1, result.out + result.err
    assert "usage.parquet:1: properties" in result.out


def test_a_text_properties_column_is_refused_without_naming_dask(run_cli: RunCli, tmp_path: Path) -> None:
    source = tmp_path / "usage.parquet"
    pq.write_table(
        pa.table(
            {"external_subscription_id": ["sub_1"], "code": ["api_calls"], "properties": ['{"region": "eu"}']}
        ),
        source,
    )

    result = run_cli("ingest", "lago", str(source), "--dry-run")

    assert result.code == 1, result.out + result.err
    assert "usage.parquet:1: properties: expected a struct or a map, got text" in result.out
    assert "Dask" not in result.out


def test_a_property_given_by_both_the_nested_and_the_flat_column_is_a_problem_of_its_row(
    run_cli: RunCli, tmp_path: Path
) -> None:
    source = tmp_path / "usage.parquet"
    pq.write_table(
        pa.table(
            {
                "external_subscription_id": ["sub_1", "sub_2"],
                "code": ["api_calls"] * 2,
                "properties": [{"gb": 1.5, "region": "eu"}, {"gb": None, "region": "eu"}],
                "prop.gb": [2.5, 2.5],
            }
        ),
        source,
    )

    result = run_cli("ingest", "lago", str(source), "--dry-run")

    # Row 1 says gb twice (which to bill is not the tool's to choose); row 2's nested gb is null.
    assert result.code == 1, result.out + result.err
    assert "usage.parquet:1: prop.gb: properties holds the same field too" in result.out
    assert "usage.parquet:2" not in result.out


@pytest.mark.parametrize(
    ("flat", "value", "said"),
    [("attr.calls", 3, "attr.calls: attributes"), ("dim.region", "us", "dim.region: dimensions")],
)
def test_a_togai_field_given_by_both_the_nested_and_the_flat_column_is_a_problem_of_its_row(
    run_cli: RunCli, tmp_path: Path, flat: str, value: object, said: str
) -> None:
    source = tmp_path / "usage.parquet"
    pq.write_table(
        pa.table(
            {
                "schemaName": ["api_calls"],
                "accountId": ["acct_1"],
                "timestamp": ["2024-05-01T10:15:30Z"],
                "attributes": [[{"name": "calls", "value": "1"}]],
                "dimensions": [{"region": "eu"}],
                flat: [value],
            }
        ),
        source,
    )

    result = run_cli("ingest", "togai", str(source), "--dry-run")

    assert result.code == 1, result.out + result.err
    assert f"usage.parquet:1: {said} holds the same field too" in result.out
