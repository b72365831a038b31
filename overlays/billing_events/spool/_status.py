"""What ``billing-events spool status`` shows: the files of a spool directory and what each holds.

A live owner publishes its figures to ``NAME.status`` (``publish_status``, every second); a dead
sender's file is read directly, its lock taken only for the read.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import attrs

from ._adopt import waiting_rows
from ._files import Owned, owner_pid
from ._intake import intake_rows
from ._store import ROW_OVERHEAD, create_schema, pending_intake


@attrs.frozen
class SpoolFileStatus:
    """What ``billing-events spool status`` shows for one file."""

    name: str
    live: bool | None
    """None when its lock file cannot be opened (another user's): whether its owner lives is unknown."""
    pid: int | None
    pending: int | None
    bytes: int | None
    oldest: float | None
    settled: dict[str, int]
    problem: str | None = None
    updated: float | None = None
    """When a live owner last published its figures (they are refreshed every second)."""


def publish_status(
    status_path: Path, pending: int, stored: int, max_bytes: int, oldest: float | None
) -> None:
    """A live owner's figures, replaced whole: a reader never sees half of them."""
    status = {
        "pid": os.getpid(),
        "pending": pending,
        "bytes": stored,
        "max_bytes": max_bytes,
        "oldest": oldest,
        "updated": time.time(),
    }
    temporary = status_path.with_suffix(".status-new")
    temporary.write_text(json.dumps(status))
    temporary.replace(status_path)


def spool_status(directory: str | os.PathLike[str]) -> list[SpoolFileStatus]:
    """The files of a spool directory: live ones from their owner's status, dead ones read directly."""
    found = []
    for lock_path in sorted(Path(directory).glob("*.lock")):
        try:
            owned = Owned.try_lock(lock_path)
        except OSError as exc:
            name = lock_path.with_suffix(".spool").name
            found.append(
                SpoolFileStatus(name, None, owner_pid(name), None, None, None, {}, f"not readable: {exc}")
            )
            continue
        if owned is None:
            found.append(_live_status(lock_path))
            continue
        try:
            found.append(_dead_status(owned.db_path))
        finally:
            os.close(owned.fd)  # a read: the file stays for the next sender to adopt
    for aside in sorted(Path(directory).glob("*.damaged-*")):
        if not aside.name.endswith("-wal"):
            found.append(
                SpoolFileStatus(aside.name, False, None, None, None, None, {}, "set aside as damaged")
            )
    return found


def _live_status(lock_path: Path) -> SpoolFileStatus:
    name = lock_path.with_suffix(".spool").name
    pid = owner_pid(name)
    try:
        status = json.loads(lock_path.with_suffix(".status").read_text())
    except (OSError, ValueError):
        return SpoolFileStatus(name, True, pid, None, None, None, {}, "no status published yet")
    return SpoolFileStatus(
        name, True, pid, status["pending"], status["bytes"], status["oldest"], {}, updated=status["updated"]
    )


def _dead_status(path: Path) -> SpoolFileStatus:
    pid = owner_pid(path.name)
    if not path.exists():
        # Its SQLite part set aside as damaged: what its intake holds that the salvage did not take in.
        try:
            found, _ = intake_rows(path, 0)
        except OSError as exc:
            return SpoolFileStatus(path.name, False, pid, None, None, None, {}, f"unreadable: {exc}")
        waiting = waiting_rows(path, found)
        size = sum(len(row[3]) for row in waiting) + ROW_OVERHEAD * len(waiting)
        return SpoolFileStatus(
            path.name, False, pid, len(waiting), size, waiting[0][1] if waiting else None, {}
        )
    try:
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            create_schema(db)  # missing when its sender was killed creating it: then it holds no rows
            pending, size, oldest = db.execute(
                "SELECT count(*), coalesce(sum(length(payload)), 0), min(at) FROM events"
            ).fetchone()
            settled = dict(db.execute("SELECT status, count FROM tally").fetchall())
            intake, _ = pending_intake(db, path)
        finally:
            db.close()
    except (sqlite3.DatabaseError, OSError) as exc:  # OSError: an intake file that cannot be read
        return SpoolFileStatus(path.name, False, None, None, None, None, {}, f"unreadable: {exc}")
    pending += len(intake)
    size += sum(len(row[3]) for row in intake)
    if intake and oldest is None:
        oldest = intake[0][1]
    return SpoolFileStatus(path.name, False, pid, pending, size + ROW_OVERHEAD * pending, oldest, settled)
