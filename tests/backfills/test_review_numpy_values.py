"""Rows of a Dask bag carry whatever the caller put in them: numpy scalars among others."""

from __future__ import annotations

from pathlib import Path

import numpy
import pytest

from backfills.support import Mock, backfill_for, lago_rows, togai_rows
from billing_events.backfill import send_partition
from billing_events.cli._columnar import row_to_event

LAGO_ROW = {"transaction_id": "t1", "external_subscription_id": "s", "code": "c", "timestamp": 1714558530}


@pytest.mark.xfail(
    strict=True,
    reason="_text formats a float subclass through Decimal(repr(value)); numpy 2 writes np.float64(1.5), "
    "so decimal.InvalidOperation escapes row_to_event",
)
@pytest.mark.parametrize(("value", "text"), [(numpy.float64(1.5), "1.5"), (numpy.float64(1e-05), "0.00001")])
def test_a_numpy_float_amount_is_written_as_plain_digits(value: object, text: str) -> None:
    event, problem = row_to_event("lago", {**LAGO_ROW, "precise_total_amount_cents": value})

    assert problem is None
    assert event is not None
    assert event["precise_total_amount_cents"] == text


@pytest.mark.xfail(
    strict=True,
    reason="a numpy float in a text field raises decimal.InvalidOperation inside the streamed "
    "identification, which ends the whole partition mid-send instead of one row's problem",
)
def test_one_row_with_a_numpy_float_amount_does_not_take_the_partition_down(
    mock: Mock, tmp_path: Path
) -> None:
    rows = lago_rows(300)
    rows[150] = {**rows[150], "precise_total_amount_cents": numpy.float64(2.5)}
    backfill = backfill_for(mock, "lago", tmp_path / "ckpt", chunk_events=100).prepare()

    summary = send_partition(rows, backfill)

    assert summary["rows"] == 300
    assert summary["delivered"] + summary["rejected"] == 300


@pytest.mark.xfail(
    strict=True,
    reason="a numpy float in a Togai attribute goes through _text's Decimal(repr(value)) and raises "
    "decimal.InvalidOperation: the partition ends instead of sending the row",
)
def test_a_togai_partition_with_a_numpy_float_attribute_is_sent(mock: Mock, tmp_path: Path) -> None:
    rows = togai_rows(10)
    rows[5] = {**rows[5], "attr.calls": numpy.float64(2.5)}
    backfill = backfill_for(mock, "togai", tmp_path / "ckpt").prepare()

    summary = send_partition(rows, backfill)

    assert summary["rows"] == 10
    assert summary["delivered"] == 10
