"""Review (fifth reading of fd1be85): an adoption whose rows committed but whose fsync failed.

``Spool._insert`` now returns False when the WAL's fsync fails after the adopted rows were committed.
Its callers read False as "did not fit": the dead file keeps the rows, and the next scan adopts them again.
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from billing_events.spool._store import Store
from overlay.spool_support import damaged_dead_file, drained_ids, killed, offer_events, togai_spool

EVENTS = 5


def _fsync_fails(monkeypatch: pytest.MonkeyPatch, times: int | None) -> None:
    """The WAL cannot be synced (EIO) for the first ``times`` attempts (None: always)."""
    real = Store.open_wal
    calls = {"n": 0}

    def open_wal(self: Store) -> int | None:
        calls["n"] += 1
        if times is None or calls["n"] <= times:
            raise OSError(errno.EIO, "Input/output error")
        return real(self)

    monkeypatch.setattr(Store, "open_wal", open_wal)


def _dead_file(directory: Path, damaged: bool) -> None:
    if damaged:
        damaged_dead_file(directory, EVENTS)
    else:
        dead = togai_spool(directory)
        offer_events(dead, EVENTS)
        killed(dead)


@pytest.mark.parametrize("damaged", [False, True], ids=["healthy", "salvaged"])
def test_an_adoption_whose_sync_failed_once_does_not_bring_its_events_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damaged: bool
) -> None:
    _dead_file(tmp_path, damaged)
    _fsync_fails(monkeypatch, times=1)  # the start-up adoption's sync fails; the next scan's succeeds
    spool = togai_spool(tmp_path)
    try:
        spool.adopt()  # the keeper's next scan (every 2 s)
        ids = drained_ids(spool)
    finally:
        spool.close()

    assert sorted(ids) == sorted(set(ids)), sorted(ids)  # each adopted event once


def test_a_wal_that_cannot_be_synced_does_not_multiply_adopted_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _dead_file(tmp_path, damaged=False)
    _fsync_fails(monkeypatch, times=None)
    spool = togai_spool(tmp_path)
    try:
        for _ in range(3):
            spool.adopt()
        depth = spool.depth
    finally:
        spool.close()

    assert depth <= EVENTS, depth


def test_an_adoption_whose_sync_failed_does_not_say_the_spool_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _dead_file(tmp_path, damaged=False)
    _fsync_fails(monkeypatch, times=1)
    with caplog.at_level(logging.WARNING, logger="billing_events"):
        spool = togai_spool(tmp_path)
    spool.close()

    assert "could not sync adopted spool events" in caplog.text
    assert "is full" not in caplog.text, caplog.text


def test_an_adoption_synced_takes_each_event_once_and_removes_the_dead_file(tmp_path: Path) -> None:
    _dead_file(tmp_path, damaged=False)
    spool = togai_spool(tmp_path)
    try:
        ids = drained_ids(spool)
        files = sorted(path.name for path in tmp_path.glob("*.spool"))
    finally:
        spool.close()

    assert sorted(ids) == sorted(f"ev-{n}" for n in range(EVENTS))
    assert len(files) == 1  # the adopter's own
