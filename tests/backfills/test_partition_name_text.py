"""A rejected value written by its text: that text must not follow the process's string hashes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = """
import collections, types
from billing_events.backfill.partition import partition_name, row_digest
Labels = collections.namedtuple("Labels", "tags")
tags = frozenset({"alpha", "beta", "gamma", "delta", "epsilon"})
rows = [{"external_subscription_id": "s", "code": "c", "prop.n": n} for n in range(5)]
rows[2] = {**rows[2], "prop.labels": %s}
print(partition_name(row_digest(row) for row in rows))
"""


@pytest.mark.parametrize("value", ["Labels(tags)", "types.SimpleNamespace(tags=tags)"])
def test_a_rejected_value_holding_a_set_names_its_partition_the_same_in_every_process(value: str) -> None:
    names = {
        subprocess.run(
            [sys.executable, "-c", CODE % value],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in (1, 2, 3, 4, 5, 6)
    }
    assert len(names) == 1
