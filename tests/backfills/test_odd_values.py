"""Rows of a Dask bag carry whatever the caller put in them: numpy scalars, decimals, odd mappings."""

from __future__ import annotations

import decimal
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy
import pytest

from backfills.support import Mock, backfill_for, lago_rows, togai_rows
from billing_events.backfill import send_partition
from billing_events.cli._columnar import row_to_event

LAGO_ROW = {"transaction_id": "t1", "external_subscription_id": "s", "code": "c", "timestamp": 1714558530}


@pytest.mark.parametrize(("value", "text"), [(numpy.float64(1.5), "1.5"), (numpy.float64(1e-05), "0.00001")])
def test_a_numpy_float_amount_is_written_as_plain_digits(value: object, text: str) -> None:
    event, problem = row_to_event("lago", {**LAGO_ROW, "precise_total_amount_cents": value})

    assert problem is None
    assert event is not None
    assert event["precise_total_amount_cents"] == text


def test_one_row_with_a_numpy_float_amount_does_not_take_the_partition_down(
    mock: Mock, tmp_path: Path
) -> None:
    rows = lago_rows(300)
    rows[150] = {**rows[150], "precise_total_amount_cents": numpy.float64(2.5)}
    backfill = backfill_for(mock, "lago", tmp_path / "ckpt", chunk_events=100).prepare()

    summary = send_partition(rows, backfill)

    assert summary["rows"] == 300
    assert summary["delivered"] + summary["rejected"] == 300


def test_a_togai_partition_with_a_numpy_float_attribute_is_sent(mock: Mock, tmp_path: Path) -> None:
    rows = togai_rows(10)
    rows[5] = {**rows[5], "attr.calls": numpy.float64(2.5)}
    backfill = backfill_for(mock, "togai", tmp_path / "ckpt").prepare()

    summary = send_partition(rows, backfill)

    assert summary["rows"] == 10
    assert summary["delivered"] == 10


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        (decimal.Decimal("NaN"), "is not a number JSON can carry"),
        (decimal.Decimal("-Infinity"), "is not a number JSON can carry"),
        (decimal.Decimal("1e400"), "at most 100"),
        (decimal.Decimal("1." + "1" * 150), "at most 100"),
    ],
)
def test_a_decimal_without_a_short_plain_form_is_refused_by_name(value: decimal.Decimal, rule: str) -> None:
    event, problem = row_to_event("lago", {**LAGO_ROW, "precise_total_amount_cents": value})

    assert event is None
    assert problem is not None
    assert problem.startswith("precise_total_amount_cents: ")
    assert rule in problem
    assert len(problem) < 200


class Broken(Mapping[str, object]):
    """A row whose reading fails half way: a value that raises as it is read."""

    def __init__(self, row: dict[str, object]) -> None:
        self._row = row

    def __getitem__(self, name: str) -> object:
        if name == "prop.n":
            raise KeyError("x" * 2_000)
        return self._row[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._row)

    def __len__(self) -> int:
        return len(self._row)


def test_a_row_that_breaks_as_it_is_read_is_rejected_and_the_others_are_sent(
    mock: Mock, tmp_path: Path
) -> None:
    rows: list[Mapping[str, object]] = list(lago_rows(30))
    rows[11] = Broken(dict(rows[11]))
    backfill = backfill_for(mock, "lago", tmp_path / "ckpt").prepare()

    summary = send_partition(rows, backfill)

    assert (summary["rows"], summary["delivered"], summary["rejected"]) == (30, 29, 1)
    assert "KeyError" in summary["problem"]
    assert len(summary["problem"]) < 1_000


class Shrinking(Sequence[dict[str, object]]):
    """A sequence that gives fewer rows on its second reading (a source changed under the job)."""

    def __init__(self, rows: list[dict[str, object]]) -> None:
        self._rows = rows
        self.readings = 0

    def __iter__(self) -> Iterator[dict[str, object]]:
        self.readings += 1
        return iter(self._rows if self.readings == 1 else self._rows[:-3])

    def __getitem__(self, index: Any) -> Any:
        return self._rows[index]

    def __len__(self) -> int:
        return len(self._rows)


def test_rows_that_change_between_the_two_readings_are_an_error_not_a_silent_loss(
    mock: Mock, tmp_path: Path
) -> None:
    backfill = backfill_for(mock, "lago", tmp_path / "ckpt").prepare()

    with pytest.raises(RuntimeError, match="20 rows named it, 17 were read"):
        send_partition(Shrinking(lago_rows(20)), backfill)


@pytest.mark.parametrize(
    ("value", "sent"),
    [(numpy.int64(3), 3), (numpy.uint8(7), 7), (numpy.float32(1.5), 1.5), (decimal.Decimal("0E+1000"), "0")],
)
def test_numpy_numbers_go_as_plain_numbers_and_a_zero_decimal_as_zero(value: object, sent: object) -> None:
    event, problem = row_to_event("lago", {**LAGO_ROW, "prop.n": value})

    assert problem is None
    assert event is not None
    properties = event["properties"]
    assert isinstance(properties, dict)
    assert properties["n"] == sent
    assert type(properties["n"]) is type(sent)
