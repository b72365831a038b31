"""Hostile tests of the keeper's spare intake segment (``Spool._prepare_spare``) and ``_rotate``.

Each test here failed because of a defect found in review, before its fix.
"""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from billing_events import QueueFullError, Togai
from billing_events.spool import _intake as spool_intake
from billing_events.spool import _spool as spool_module

from .scripted import togai_event
from .test_spool import DESTINATION, base_url, client, direct_spool, event, prepare, server, stored_keys  # noqa: F401

RULES = Togai("token", base_url=DESTINATION).rules


def _failing_directory_sync(
    monkeypatch: pytest.MonkeyPatch, when: Any, code: int = errno.EIO
) -> threading.Event:
    """fsync_directory fails once, for the first call for which ``when()`` is true; the event is set then."""
    real = spool_module.fsync_directory
    failed = threading.Event()

    def fsync_directory(directory: Path) -> None:
        if not failed.is_set() and when():
            failed.set()
            raise OSError(code, os.strerror(code))
        real(directory)

    monkeypatch.setattr(spool_module, "fsync_directory", fsync_directory)
    return failed


def test_a_spare_whose_directory_sync_failed_is_not_left_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_intake, "SEGMENT_BYTES", 64 * 1024)
    directory = tmp_path / "spool"
    spool = direct_spool(directory)  # durability "group": the spare's name is synced
    failed = _failing_directory_sync(monkeypatch, lambda: threading.current_thread() is spool._keeper)
    payloads = [RULES.encode(togai_event(n))[1] for n in range(400)]
    offered = 0
    for payload in payloads:  # past half of the first segment: the keeper makes a spare, which fails
        spool.offer(payload)
        offered += 1
        if spool._segments[-1].offset * 2 >= spool._segments[-1].size:
            break
    assert failed.wait(10), "the keeper never made a spare"
    spool.close()  # nothing was sent: the events stay in the SQLite file for the next sender
    left = sorted(path.name.rpartition(".")[2] for path in directory.glob("*.intake-*"))
    assert left == [], f"intake files left behind by a clean close: {left}"

    second = direct_spool(directory)  # the events themselves are all there, for the next sender
    try:
        assert second.depth == offered
    finally:
        second.close()


@pytest.mark.parametrize("on_full", ["block", "drop"])
def test_a_failed_directory_sync_of_a_new_segment_is_handled_like_a_fulldirect_spool(
    server: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    on_full: str,
) -> None:
    provider = prepare(server, "togai")
    directory = tmp_path / "spool"
    letters = tmp_path / "dead.jsonl"
    with client(provider, base_url(server, provider), dead_letter_path=letters) as api:
        sender = api.background(spool=directory, flush_interval=3600, flush_at_events=10_000, on_full=on_full)
        caller = threading.current_thread()
        # The first track() makes the first segment on the caller's thread; the directory is full.
        failed = _failing_directory_sync(
            monkeypatch, lambda: threading.current_thread() is caller, errno.ENOSPC
        )
        tracked = []
        try:
            sender.track(event(provider, "first", 0))
            if not sender.stats.dropped:  # under "drop", a refused event goes to the dead letters
                tracked.append("first")
        except QueueFullError:
            pass  # a full disk is a full spool: the caller keeps the event
        assert failed.is_set()
        monkeypatch.undo()
        sender.track(event(provider, "second", 1))
        tracked.append("second")
        stats = sender.close(30)
    assert stats.delivered == len(tracked)
    assert sorted(stored_keys(server, provider)) == sorted(tracked)
    assert not list(directory.glob("*.intake-*"))
    if on_full == "drop" and "first" not in tracked:
        assert letters.read_text().count("No space left on device") == 1
