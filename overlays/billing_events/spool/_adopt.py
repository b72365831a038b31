"""Adoption: taking over the files that dead senders of the same destination left behind.

A lock that can be taken belongs to a dead process. Its intake is folded into its SQLite file,
whose rows are then copied into the adopter's in chunks (inserted here, then deleted there: a crash
in between re-sends, never loses), and its files are removed. A file that fails ``quick_check`` is
read row by row; what is intact is kept, and the file is set aside as damaged.
"""

from __future__ import annotations

import bisect
import functools
import json
import logging
import math
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from .._logs import log_safely
from ._files import Owned, aside_path, fsync_directory, remove_files, wal_path
from ._intake import Row, consume_intake, intake_rows
from ._store import (
    DELETE_RUN,
    INSERT,
    MOVED_THROUGH,
    ROW_OVERHEAD,
    SELECT_RUN,
    create_schema,
    moved_through,
    ranges,
)

log = logging.getLogger("billing_events")

# Rows copied per transaction when a dead process's file is adopted or salvaged.
MERGE_CHUNK = 2000
# Runs of seqs, (first, last), sorted.
Runs = list[tuple[int, int]]
# Files reported as unreadable (an intake, another user's lock): every scan, each 2 s, would report them again.
_reported: set[Path] = set()


@attrs.frozen
class Adoption:
    """One scan of the directory: each dead sender's rows go to ``insert`` until ``deadline`` or ``stop``.

    ``insert`` adds rows at the end of the adopter's file in one transaction; False when they do not fit.
    """

    directory: Path
    insert: Callable[[list[tuple[Any, ...]]], bool]
    stop: threading.Event
    deadline: float | None
    # Salvages cut short by a deadline or a full spool, by file name: (next seq to read, kept, unreadable).
    # And the runs of seqs taken in so far, as the file's note has them (``_note_salvaged``).
    salvaged: dict[str, tuple[int, int, int, Runs]] = attrs.field(factory=dict)

    def run(self, prefix: str, own_lock: Path) -> None:
        """Take over the files named ``prefix*`` whose owner is gone (``own_lock`` is the adopter's own)."""
        for lock_path in sorted(self.directory.glob(f"{prefix}*.lock")):
            if self.stop.is_set() or lock_path == own_lock:
                continue
            try:
                owned = Owned.try_lock(lock_path)
            except OSError as exc:
                # Not ours to take (another user's sender, its lock file mode 0600): as if its owner lived.
                _report_once(lock_path, logging.WARNING, "spool file %s skipped: %s", lock_path.name, exc)
                continue
            if owned is not None:
                finished = False
                try:
                    finished = self._merge(owned.db_path)
                    if not finished and self._out_of_time():
                        break
                finally:
                    owned.release(remove=finished)

    def _out_of_time(self) -> bool:
        return self.stop.is_set() or (self.deadline is not None and time.monotonic() > self.deadline)

    def _merge(self, path: Path) -> bool:
        """Copy the rows of a dead sender's file into ours. True when the file can be removed."""
        if not path.exists():
            # Set aside as damaged before its intake fitted here: the intake is what is left to take over.
            return self._take_intake(path)
        source: sqlite3.Connection | None = None
        try:
            source = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            source.execute("PRAGMA locking_mode=EXCLUSIVE")
            # Lets SQLite read a file shorter than its header says (a torn file) instead of refusing it whole.
            source.execute("PRAGMA writable_schema=ON")
            healthy = source.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        except sqlite3.DatabaseError:
            healthy = False
        try:
            if healthy and source is not None:
                create_schema(source)  # missing when its sender was killed creating it: then it holds no rows
                folded = fold_intake(source, path)
                # An intake that could not be read waits in its files: the file is kept for a later scan.
                return self._move_rows(source, path) and folded
            return self._salvage(source, path)
        finally:
            if source is not None:
                source.close()

    def _move_rows(self, source: sqlite3.Connection, path: Path) -> bool:
        """From a healthy file: each chunk is inserted here, then deleted there."""
        after, damaged = 0, 0
        while True:
            rows = source.execute(
                "SELECT seq, at, crc, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, MERGE_CHUNK),
            ).fetchall()
            if not rows:
                break
            intact = [row for row in rows if _intact(row)]
            damaged += len(rows) - len(intact)
            if self._out_of_time():
                return False  # the rest is taken over later, by this sender or another
            if not self.insert(intact):
                log_safely(
                    log.warning, "spool %s is full: %s adopted only in part", self.directory, path.name
                )
                return False
            source.executemany(DELETE_RUN, ranges(row[0] for row in intact))
            after = rows[-1][0]
        if damaged:
            _set_aside(path, f"{damaged} rows failed their checksum")
            return False
        return True

    def _salvage(self, source: sqlite3.Connection | None, path: Path) -> bool:
        """From a damaged file: every row that can still be read and passes its checksum.

        The seqs taken in are written down after each chunk (``NAME.spool.salvaged``), before the next:
        a salvage resumed later (after a deadline, a full spool, or by another process after a crash)
        and the read of the intake skip them, so no event is taken in twice.
        """
        earlier = self.salvaged.pop(path.name, None)
        resume, kept, unreadable, runs = earlier if earlier is not None else (0, 0, 0, salvaged_runs(path))
        if source is not None:
            try:
                first, last = source.execute("SELECT min(seq), max(seq) FROM events").fetchone()
            except sqlite3.DatabaseError:
                first, last = 1, max(1, path.stat().st_size // ROW_OVERHEAD)
            for low in range(max(first or 1, resume), (last or 0) + 1, MERGE_CHUNK):
                if self._out_of_time():
                    # The file stays as it is; the next scan reads on from here.
                    self.salvaged[path.name] = (low, kept, unreadable, runs)
                    return False
                high = low + MERGE_CHUNK - 1
                rows, lost = _readable_rows(source, low, high)
                intact = list(
                    {
                        row[0]: row
                        for row in rows
                        if low <= row[0] <= high and _intact(row) and not _within(row[0], runs)
                    }.values()
                )
                if not self.insert(intact):
                    log_safely(
                        log.warning, "spool %s is full: %s salvaged only in part", self.directory, path.name
                    )
                    self.salvaged[path.name] = (low, kept, unreadable, runs)
                    return False
                unreadable += lost
                kept += len(intact)
                runs = _merged(runs, ranges(row[0] for row in intact))
                if not _note_salvaged(path, runs):
                    # Not written down: this process goes on from here later; nothing is set aside yet.
                    self.salvaged[path.name] = (high + 1, kept, unreadable, runs)
                    return False
        # The intake records SQLite had not received yet, or that it lost with the damaged part: from the
        # first one, as the watermark may be lost too. Records of events moved into SQLite and delivered
        # since are among them (only their absence there said so): they are sent again, under their keys.
        # An intake that cannot be read now, or does not fit, waits in its files for a later scan
        # (``_take_intake``), which skips the seqs the note has.
        read = _read_intake(path, 0)
        intake = [] if read is None else [row for row in read[0] if not _within(row[0], runs)]
        if read is not None and self.insert(intake):
            kept += len(intake)
            consume_intake(path, read[1])
            remove_files(salvaged_path(path))
        elif read is not None and intake:
            log_safely(
                log.warning, "spool %s is full: the intake of %s waits for room", self.directory, path.name
            )
        _set_aside(
            path,
            f"the file is damaged; {kept} intact events were kept"
            + (f", {unreadable} seqs could not be read" if unreadable else ""),
        )
        return False

    def _take_intake(self, path: Path) -> bool:
        """The intake records of a file whose SQLite part is gone (set aside), but for those its salvage
        took in already. True when they are all in ours."""
        read = _read_intake(path, 0)
        if read is None:
            return False
        if not self.insert(waiting_rows(path, read[0])):
            return False
        consume_intake(path, read[1])
        remove_files(salvaged_path(path))
        return True


def fold_intake(source: sqlite3.Connection, path: Path) -> bool:
    """Move a dead sender's intake records into its own SQLite file (idempotent), then drop the intake.

    False when the intake could not be read: it is kept as it is.
    """
    read = _read_intake(path, moved_through(source))
    if read is None:
        return False
    rows, damaged = read
    if rows:
        source.execute("BEGIN IMMEDIATE")
        source.executemany(INSERT.replace("INSERT", "INSERT OR IGNORE", 1), rows)
        source.execute(MOVED_THROUGH, (str(rows[-1][0]),))
        source.execute("COMMIT")
    consume_intake(path, damaged)
    return True


def _read_intake(path: Path, after: int) -> tuple[list[Row], int] | None:
    """``intake_rows``; None (reported once) when a segment cannot be read, a bad sector maybe.

    The intake is then left whole, neither taken nor consumed: a later scan reads it again.
    """
    try:
        return intake_rows(path, after)
    except OSError as exc:
        _report_once(
            path,
            logging.ERROR,
            "the intake of spool file %s could not be read; it is kept for a later scan: %s",
            path.name,
            exc,
        )
        return None


def salvaged_path(path: Path) -> Path:
    return path.with_name(path.name + ".salvaged")


def salvaged_runs(path: Path) -> Runs:
    """The seqs a salvage of ``path`` took in, as its note has them (none without a note)."""
    try:
        runs = json.loads(salvaged_path(path).read_bytes())
        return [(int(first), int(last)) for first, last in runs]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, TypeError):
        # Unreadable: the intake is taken whole, salvaged events again among it (sent again, same keys).
        _report_once(salvaged_path(path), logging.ERROR, "spool note %s cannot be read", path.name)
        return []


def waiting_rows(path: Path, rows: list[Row]) -> list[Row]:
    """The intake ``rows`` of ``path`` that its salvage has not taken in."""
    runs = salvaged_runs(path)
    return [row for row in rows if not _within(row[0], runs)] if runs else rows


def _note_salvaged(path: Path, runs: Runs) -> bool:
    """The seqs taken in so far, synced; False (reported once) when the note cannot be written."""
    note = salvaged_path(path)
    temporary = note.with_name(note.name + ".new")
    try:
        with open(temporary, "wb") as file:
            file.write(json.dumps(runs).encode())
            file.flush()
            os.fsync(file.fileno())
        temporary.replace(note)
        fsync_directory(path.parent)
    except OSError as exc:
        remove_files(temporary)
        _report_once(note, logging.ERROR, "spool note %s cannot be written: %s", note.name, exc)
        return False
    return True


def _within(seq: int, runs: Runs) -> bool:
    at = bisect.bisect_right(runs, (seq, math.inf)) - 1
    return at >= 0 and runs[at][0] <= seq <= runs[at][1]


def _merged(runs: Runs, more: Runs) -> Runs:
    """Sorted runs, those that touch or overlap made one."""
    merged: Runs = []
    for first, last in sorted(runs + more):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def _report_once(path: Path, level: int, message: str, *args: object) -> None:
    if path not in _reported:
        _reported.add(path)
        log_safely(functools.partial(log.log, level), message, *args, stacklevel=2)


def _set_aside(path: Path, why: str) -> None:
    """A damaged SQLite file (and its WAL) renamed, never to be sent from again; the reason logged."""
    aside = aside_path(path)
    path.rename(aside)
    if wal_path(path).exists():
        wal_path(path).rename(wal_path(aside))
    log_safely(log.error, "spool file %s set aside as %s: %s", path.name, aside.name, why)


def _intact(row: tuple[Any, ...]) -> bool:
    """Whether a row read back is whole: typed as written and its payload matching its CRC-32."""
    seq, at, crc, payload = row
    return (
        isinstance(seq, int)
        and isinstance(at, float)
        and isinstance(payload, bytes)
        and zlib.crc32(payload) == crc
    )


def _readable_rows(source: sqlite3.Connection, low: int, high: int) -> tuple[list[tuple[Any, ...]], int]:
    """The rows of a damaged file between two seqs that can still be read, and how many could not be."""
    try:
        return source.execute(SELECT_RUN, (low, high)).fetchall(), 0
    except sqlite3.DatabaseError:
        pass
    rows, lost = [], 0
    for seq in range(low, high + 1):
        try:
            rows += source.execute(SELECT_RUN, (seq, seq)).fetchall()
        except sqlite3.DatabaseError:
            lost += 1
    return rows, lost
