"""Which spooled events move from the intake into SQLite, and that every one is kept once either way.

Most events are settled within a moment: moving them into SQLite would cost an insert and a delete
for nothing. The keeper moves only those that have waited ``MOVE_AFTER``; closing moves the rest.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import pytest

from billing_events import Togai
from billing_events.spool import _spool as spool_module
from billing_events.spool._spool import waited_through

from .scripted import togai_event
from .spool_support import next_batch
from .test_spool import DESTINATION, direct_spool


def test_only_what_was_accepted_move_after_ago_or_earlier_is_due() -> None:
    marks = deque([(10.0, 3), (10.2, 7), (10.6, 12)])

    assert waited_through(marks, 10.0 + spool_module.MOVE_AFTER - 0.01) is None
    assert waited_through(marks, 10.2 + spool_module.MOVE_AFTER) == 7
    assert list(marks) == [(10.6, 12)]  # what is due is not counted twice
    assert waited_through(marks, 10.3 + spool_module.MOVE_AFTER) is None


def test_events_moved_in_part_and_settled_either_way_are_kept_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "MOVE_AFTER", 3600.0)  # no move but the test's own
    rules = Togai("token", base_url=DESTINATION).rules
    payloads = [rules.encode(togai_event(n))[1] for n in range(10)]
    first = direct_spool(tmp_path)
    for payload in payloads:
        first.offer(payload)
    with first._db_lock:
        first._move_now(through=4)  # events 1 to 4 into SQLite; 5 to 10 stay in the intake alone
        assert first._store.db.execute("SELECT seq FROM events").fetchall() == [(1,), (2,), (3,), (4,)]

    taken = next_batch(first)
    # Settled: two that were moved (deleted from SQLite) and two that were not (a marker in the intake).
    first.settle([taken[0], taken[1], taken[8], taken[9]], [])
    first.close()
    second = direct_spool(tmp_path)
    try:
        kept = [pending.payload for pending in next_batch(second)]
    finally:
        second.close()

    assert kept == payloads[2:8]
    assert second.recovered == 6
