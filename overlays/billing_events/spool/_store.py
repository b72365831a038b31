"""A sender's SQLite file: its schema and settings, and the transactions the spool makes on it.

The file holds every event that waited longer than the intake keeps it, the tally of outcomes, and
the watermark (``moved_through``) up to which the intake has been moved in.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ._files import fsync_directory, wal_path
from ._intake import Row, intake_rows

# What a row costs on disk beyond its payload: the b-tree cell, the seq, time and CRC columns.
ROW_OVERHEAD = 40
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, at REAL NOT NULL,"
    " crc INTEGER NOT NULL, payload BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tally (status TEXT PRIMARY KEY, count INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
INSERT = "INSERT INTO events (seq, at, crc, payload) VALUES (?, ?, ?, ?)"
DELETE_RUN = "DELETE FROM events WHERE seq BETWEEN ? AND ?"
SELECT_RUN = "SELECT seq, at, crc, payload FROM events WHERE seq BETWEEN ? AND ?"
MOVED_THROUGH = (
    "INSERT INTO meta (name, value) VALUES ('moved_through', ?)"
    " ON CONFLICT (name) DO UPDATE SET value = excluded.value"
)


def open_db(path: Path, synchronous: str) -> sqlite3.Connection:
    # isolation_level=None: every statement outside BEGIN commits on its own (one per track()).
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA locking_mode=EXCLUSIVE")  # before WAL: the WAL index then lives in our memory
    db.execute("PRAGMA page_size=1024")
    db.execute("PRAGMA auto_vacuum=INCREMENTAL")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA wal_autocheckpoint=0")  # the keeper thread checkpoints, never the caller's thread
    db.execute(f"PRAGMA journal_size_limit={4 * 1024 * 1024}")
    create_schema(db)
    return db


def create_schema(db: sqlite3.Connection) -> None:
    """The tables, made if missing: a sender killed in ``open_db`` leaves a file without them, and no events."""
    for statement in SCHEMA:
        db.execute(statement)


def ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted sequence numbers as (first, last) runs: one DELETE per run."""
    runs: list[tuple[int, int]] = []
    for seq in sorted(seqs):
        if runs and runs[-1][1] + 1 == seq:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


def moved_through(source: sqlite3.Connection) -> int:
    row = source.execute("SELECT value FROM meta WHERE name = 'moved_through'").fetchone()
    return int(row[0]) if row else 0


def pending_intake(source: sqlite3.Connection, path: Path) -> tuple[list[Row], int]:
    """A dead sender's intake records that SQLite has not got and that were not settled; and the damaged count."""
    return intake_rows(path, moved_through(source))


class Store:
    """The open SQLite file of a live sender. Not thread-safe: the ``Spool`` guards it with its locks."""

    def __init__(self, path: Path, synchronous: str) -> None:
        self.path = path
        self.db = open_db(path, synchronous)
        # Outcomes of events settled in the intake, added to the SQLite tally with the next transaction.
        self.tally: Counter[str] = Counter()
        self.commits = 0  # since the last checkpoint
        self.wal_fd: int | None = None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction that also adds the pending tally; rolled back if anything in it fails."""
        db = self.db
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            if self.tally:
                db.executemany(
                    "INSERT INTO tally (status, count) VALUES (?, ?)"
                    " ON CONFLICT (status) DO UPDATE SET count = count + excluded.count",
                    self.tally.items(),
                )
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        self.tally.clear()
        self.commits += 1

    def add(self, rows: Iterable[tuple[Any, ...]], through: int) -> None:
        """Insert rows and move the watermark up to ``through``, in one transaction."""
        with self._transaction() as db:
            db.executemany(INSERT, rows)
            db.execute(MOVED_THROUGH, (str(through),))

    def delete(self, seqs: list[int]) -> None:
        """Delete settled rows, in one transaction with the pending tally."""
        with self._transaction() as db:
            db.executemany(DELETE_RUN, ranges(seqs))

    def rows_after(self, seq: int, limit: int) -> list[tuple[int, int, bytes]]:
        """The oldest rows above ``seq``, as (seq, crc, payload)."""
        return self.db.execute(
            "SELECT seq, crc, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        ).fetchall()

    def oldest(self) -> float | None:
        """When the oldest event in the file was accepted."""
        row = self.db.execute("SELECT at FROM events ORDER BY seq LIMIT 1").fetchone()
        return row[0] if row else None

    def set_aside_rows(self, seqs: list[int]) -> tuple[list[Row], Path]:
        """Rows whose bytes changed on disk: moved to a side file, never sent. The rows and the side file."""
        aside = self.path.with_name(f"{self.path.name}.damaged-rows-{int(time.time())}.jsonl")
        rows = []
        for first, last in ranges(seqs):
            rows += self.db.execute(SELECT_RUN, (first, last)).fetchall()
        with aside.open("a") as sink:
            for seq, at, crc, payload in rows:
                sink.write(json.dumps({"seq": seq, "at": at, "crc": crc, "payload": payload.hex()}) + "\n")
        self.db.executemany(DELETE_RUN, ranges(seqs))
        return rows, aside

    def checkpoint(self) -> None:
        """Checkpoint the WAL; give pages back to the file system once a quarter of the file is free."""
        self.commits = 0
        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        free, total = (
            self.db.execute("PRAGMA freelist_count").fetchone()[0],
            self.db.execute("PRAGMA page_count").fetchone()[0],
        )
        if free > 1024 and free * 4 > total:
            self.db.execute(f"PRAGMA incremental_vacuum({free // 2})")

    def open_wal(self) -> int | None:
        """The WAL, open for fsync once it exists; the first time, its name is synced into the directory."""
        if self.wal_fd is None and wal_path(self.path).exists():
            self.wal_fd = os.open(wal_path(self.path), os.O_RDONLY | os.O_CLOEXEC)
            fsync_directory(self.path.parent)
        return self.wal_fd

    def close_wal(self) -> None:
        if self.wal_fd is not None:
            os.close(self.wal_fd)
            self.wal_fd = None

    def close(self, checkpoint: bool = True) -> None:
        """Checkpoint everything into the main file (with ``checkpoint``), then close it, even if that failed.

        The connection holds the file (``locking_mode=EXCLUSIVE``): left open, no adopter could read it.
        """
        try:
            if checkpoint:
                self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self.db.close()
