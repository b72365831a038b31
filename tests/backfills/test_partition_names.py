"""A partition's name must be the same in every run and process, whatever odd value a row carries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from backfills.support import Mock, backfill_for, lago_rows
from billing_events.backfill import send_partition


class Opaque:
    """A value with no JSON form and Python's default repr (its address): its row is rejected."""


def _rows(opaque: Opaque) -> list[dict[str, Any]]:
    rows = lago_rows(20)
    rows[7] = {**rows[7], "prop.n": opaque}
    return rows


def test_a_rejected_odd_value_does_not_make_a_rerun_send_the_settled_rows_again(
    mock: Mock, tmp_path: Path
) -> None:
    first_value, second_value = Opaque(), Opaque()  # both alive: two addresses, as in two processes
    first = send_partition(_rows(first_value), backfill_for(mock, "lago", tmp_path / "ckpt").prepare())
    again = send_partition(_rows(second_value), backfill_for(mock, "lago", tmp_path / "ckpt").prepare())

    assert first["delivered"] == 19
    assert first["rejected"] == 1
    assert again["partition"] == first["partition"]
    assert again["sent"] == 0
    assert again["settled_earlier"] == 19


def test_a_row_with_a_huge_integer_and_a_set_digests_the_same_in_every_process() -> None:
    code = (
        "from billing_events.backfill.partition import row_digest;"
        "print(row_digest({'prop.big': 2**70, 'prop.tags': {'alpha', 'beta', 'gamma', 'delta'}}).hex())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": str(seed), "PATH": ""},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in (1, 2, 3, 4)
    }
    assert len(digests) == 1
