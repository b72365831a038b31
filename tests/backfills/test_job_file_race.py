"""Two drivers started together on an empty checkpoint directory keep one job stamp.

A row without a timestamp is stamped with the job's: two stamps would make it two events
with two keys, billed twice. The second driver here looked for ``backfill.json`` before the
first wrote it, and comes to write its own an hour later by its clock.
"""

from __future__ import annotations

import time
import types
from pathlib import Path
from typing import Any

import orjson
import pytest
from fsspec.implementations.local import LocalFileSystem

from billing_events.backfill import _checkpoint
from billing_events.backfill._checkpoint import job_stamp


def test_a_driver_that_looked_before_another_wrote_the_job_keeps_the_first_stamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = str(tmp_path / "ckpt")
    first, _ = job_stamp(url, {}, "lago", "https://api.getlago.com/api/v1")
    looked = LocalFileSystem.exists

    def not_yet_written(self: Any, path: str, **options: Any) -> bool:
        return False if str(path).endswith(_checkpoint.JOB_FILE) else bool(looked(self, path, **options))

    monkeypatch.setattr(LocalFileSystem, "exists", not_yet_written)
    later = time.time() + 3600
    monkeypatch.setattr(_checkpoint, "time", types.SimpleNamespace(time=lambda: later, time_ns=time.time_ns))

    second, _ = job_stamp(url, {}, "lago", "https://api.getlago.com/api/v1")

    assert second == first
    assert orjson.loads((tmp_path / "ckpt" / "backfill.json").read_bytes())["stamp"] == first
    assert [path.name for path in (tmp_path / "ckpt").iterdir()] == ["backfill.json"]  # no file left over


def test_the_driver_that_loses_the_race_still_refuses_another_provider_s_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = str(tmp_path / "ckpt")
    job_stamp(url, {}, "togai")
    looked = LocalFileSystem.exists
    monkeypatch.setattr(
        LocalFileSystem,
        "exists",
        lambda self, path, **options: (
            False if str(path).endswith("backfill.json") else looked(self, path, **options)
        ),
    )

    with pytest.raises(_checkpoint.CheckpointError, match="holds a togai backfill, not lago"):
        job_stamp(url, {}, "lago")
