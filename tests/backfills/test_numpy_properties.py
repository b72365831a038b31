"""Rows of a Dask bag carry numpy floats in Lago properties and timestamps, not only in amounts."""

from __future__ import annotations

from pathlib import Path

import numpy
import pytest

from backfills.support import Mock, backfill_for, lago_rows
from billing_events.backfill import send_partition


@pytest.mark.parametrize(
    "changes",
    [{"prop.gb": numpy.float64(2.5)}, {"timestamp": numpy.float64(1714558530.5)}],
    ids=["property", "timestamp"],
)
def test_one_row_with_a_numpy_float_lago_value_does_not_take_the_partition_down(
    mock: Mock, tmp_path: Path, changes: dict[str, object]
) -> None:
    rows = lago_rows(30)
    rows[11] = {**rows[11], **changes}
    backfill = backfill_for(mock, "lago", tmp_path / "ckpt").prepare()

    summary = send_partition(rows, backfill)

    assert summary["rows"] == 30
    assert summary["delivered"] == 30
