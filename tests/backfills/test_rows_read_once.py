"""send_partition reads its rows twice: rows that can be read only once must not vanish."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from backfills.support import Mock, backfill_for, lago_rows
from billing_events.backfill import send_partition


class ReadOnce:
    """An iterable that is not an Iterator and gives its rows once (a reader over a stream, say)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self._rows = iter(rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self._rows


def test_rows_readable_once_are_sent_or_refused_not_dropped(mock: Mock, tmp_path: Path) -> None:
    backfill = backfill_for(mock, "lago", tmp_path / "ckpt").prepare()

    try:
        summary = send_partition(ReadOnce(lago_rows(10)), backfill)
    except (TypeError, ValueError):
        return  # refused with an error: acceptable

    assert summary["rows"] == 10
    assert summary["delivered"] == 10
