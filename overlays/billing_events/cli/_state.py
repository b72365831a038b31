"""The state of one input for one provider: which lines are settled, and the timestamps the CLI gave.

Lines are identified by a fingerprint of their content and their occurrence
among identical lines (see ``_lines``), never by their position, so the state
stays right when lines are appended, removed or re-sorted.

It is an SQLite database (standard library): an indexed set on disk that
answers "is this line settled?" for a million lines without loading them, and
commits settled lines in transactions, so a killed process leaves every line
either settled or not. A lock file next to it (``flock``) keeps a second run
away while one is using it.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from attrs import define, field, frozen

from ..outcomes import STORED_STATUSES as STATUSES

STATE_VERSION = "2"
# The state keeps the reasons of the first problem lines for the summary; counts stay exact.
MAX_PROBLEMS_KEPT = 1000
# Settled outcomes are committed at least this often (seconds); timestamps always before a send.
COMMIT_EVERY = 0.5
# Outcome names stored as small integers, one per settled line.
_STATUS_CODE = {name: code for code, name in enumerate(STATUSES)}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lines (
    fingerprint BLOB PRIMARY KEY,
    stamp INTEGER,
    status INTEGER,
    unsure_since REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS problems (
    fingerprint BLOB PRIMARY KEY,
    reason TEXT NOT NULL,
    key TEXT
) WITHOUT ROWID;
"""


class StateError(Exception):
    """The state file cannot be used for this run."""


@frozen
class Problem:
    """A line that did not end delivered: why, and under which key it was sent."""

    line: int
    status: str
    reason: str
    key: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "status": self.status, "reason": self.reason, "key": self.key}


@define
class Tally:
    """What one run knows about the lines of its input: counts by outcome and the first problems."""

    records: int = 0
    counts: dict[str, int] = field(factory=dict)
    problems: list[Problem] = field(factory=list)
    finished: bool = False
    # Lines an earlier run settled, counted under their recorded outcome and not sent again.
    earlier: int = 0

    def add(self, status: str, problem: Problem | None = None, *, earlier: bool = False) -> None:
        self.records += 1
        self.earlier += earlier
        self.counts[status] = self.counts.get(status, 0) + 1
        if problem is not None and len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(problem)


@frozen
class Known:
    """What the state holds about one line: the timestamp it was given, and its outcome once settled."""

    stamp: int | None
    status: str | None
    reason: str | None
    key: str | None
    # When the line first ended ``unknown`` (Unix seconds): since then the provider may have it.
    unsure_since: float | None = None


@frozen
class Settled:
    """A line's outcome, ready to be written to the state."""

    fingerprint: bytes
    status: str
    reason: str | None = None
    key: str | None = None


class _Lock:
    """An exclusive ``flock`` on ``PATH.lock``, which holds the pid of the run that has it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def acquire(self, state: Path) -> None:
        try:
            handle = self.path.open("a+", encoding="utf-8")
        except OSError as exc:
            raise StateError(f"cannot write state file {state}: {exc.strerror or exc}; pass --state") from exc
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read(32).strip() or "unknown"
            handle.close()
            raise StateError(
                f"another billing-events run (pid {holder}) is using {state}; wait for it to end,"
                " or stop it and run this command again: it resumes where that run stopped"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            # The file stays: removing it would let a third run lock a different inode.
            self._file.close()
            self._file = None


class State:
    """The settled lines of one input for one provider, in an SQLite file; see the module docstring."""

    def __init__(self, path: Path, connection: sqlite3.Connection, lock: _Lock) -> None:
        self.path = path
        self._db = connection
        self._lock = lock
        self._problems_kept = int(self._db.execute("SELECT count(*) FROM problems").fetchone()[0])
        # A state with no lines yet cannot know any line of this run: lookups are skipped.
        self._had_lines = self._db.execute("SELECT 1 FROM lines LIMIT 1").fetchone() is not None
        # No outcome committed yet: the first ones are committed at once.
        self._last_commit = -math.inf
        self._uncommitted = False

    @classmethod
    def open(cls, path: Path, *, provider: str, destination: str = "", restart: bool = False) -> State:
        """Lock and open (or create) the state at ``path``; ``StateError`` when it cannot be used.

        ``destination`` is the server the lines go to: a state that settled them on another server
        (a sandbox, say) is refused, unless ``restart`` sends every line again.
        """
        # Next to the file itself: a run given a symlink to the state takes the same lock.
        real = path.resolve()
        lock = _Lock(real.with_name(real.name + ".lock"))
        lock.acquire(path)
        try:
            db = _connect(path, provider)
            try:
                _check_destination(db, path, destination, restart=restart)
            except BaseException:
                db.close()
                raise
            return cls(path, db, lock)
        except BaseException:
            lock.release()
            raise

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.commit()
            self._db.close()
        self._lock.release()

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def lookup(self, fingerprints: Sequence[bytes]) -> dict[bytes, Known]:
        """What the state knows about these lines; lines it has never seen are absent."""
        found: dict[bytes, Known] = {}
        if not self._had_lines:
            return found
        # SQLite allows 32,766 parameters per statement; a chunk is at most one provider batch.
        for start in range(0, len(fingerprints), 500):
            part = fingerprints[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self._db.execute(
                "SELECT lines.fingerprint, stamp, status, reason, key, unsure_since FROM lines"
                " LEFT JOIN problems USING (fingerprint)"
                f" WHERE lines.fingerprint IN ({marks})",
                part,
            )
            for fingerprint, stamp, status, reason, key, unsure_since in rows:
                name = STATUSES[status] if status is not None else None
                found[bytes(fingerprint)] = Known(stamp, name, reason, key, unsure_since)
        return found

    def remember_stamps(self, stamps: Iterable[tuple[bytes, int]]) -> None:
        """Record the timestamps given to lines before they are sent, so a re-run sends the same ones."""
        self._db.executemany(
            "INSERT INTO lines (fingerprint, stamp) VALUES (?, ?) ON CONFLICT DO NOTHING", stamps
        )
        self._commit()

    def settle(self, lines: Sequence[Settled]) -> bool:
        """Record the outcomes of lines; True when they (and all before them) are committed.

        Outcomes are committed at most every ``COMMIT_EVERY`` seconds; those
        left waiting are committed by a later ``settle()``, by ``flush()`` once
        ``commit_due()`` says so, or at close. A crash before that only makes a
        re-run send those lines again, under the same keys and timestamps,
        which the provider drops.
        """
        now = time.time()
        self._db.executemany(
            "INSERT INTO lines (fingerprint, status, unsure_since) VALUES (?, ?, ?) ON CONFLICT DO UPDATE"
            " SET status = excluded.status, unsure_since = coalesce(lines.unsure_since, excluded.unsure_since)",
            [
                (line.fingerprint, _STATUS_CODE[line.status], now if line.status == "unknown" else None)
                for line in lines
            ],
        )
        if self._problems_kept:
            self._db.executemany(
                "DELETE FROM problems WHERE fingerprint = ?",
                [(line.fingerprint,) for line in lines if line.status in ("delivered", "duplicate")],
            )
        for line in lines:
            if line.status in ("delivered", "duplicate") or line.reason is None:
                continue
            if self._problems_kept < MAX_PROBLEMS_KEPT:
                inserted = self._db.execute(
                    "INSERT INTO problems VALUES (?, ?, ?) ON CONFLICT DO UPDATE"
                    " SET reason = excluded.reason, key = excluded.key",
                    (line.fingerprint, line.reason, line.key),
                )
                self._problems_kept += inserted.rowcount
        self._uncommitted = True
        if time.monotonic() - self._last_commit < COMMIT_EVERY:
            return False
        self._commit()
        return True

    def commit_due(self) -> float | None:
        """Seconds until the outcomes not committed yet are due; None when there are none."""
        if not self._uncommitted:
            return None
        return max(0.0, self._last_commit + COMMIT_EVERY - time.monotonic())

    def flush(self) -> bool:
        """Commit the outcomes not committed yet; True when there were some."""
        if not self._uncommitted:
            return False
        self._commit()
        return True

    def _commit(self) -> None:
        self._db.commit()
        self._last_commit = time.monotonic()
        self._uncommitted = False

    def forget_outcomes(self) -> None:
        """``--restart``: every line counts as unsettled again; the timestamps it was given stay."""
        self._db.execute("UPDATE lines SET status = NULL")
        self._db.execute("DELETE FROM problems")
        self._commit()
        self._problems_kept = 0


def _check_destination(db: sqlite3.Connection, path: Path, destination: str, *, restart: bool) -> None:
    if not destination:
        return  # the caller did not say where the lines go
    row = db.execute("SELECT value FROM meta WHERE name = 'destination'").fetchone()
    recorded = row[0] if row else None
    if recorded == destination:
        return
    if recorded is not None and not restart:
        # Its lines are settled at another server: skipping them here would never bill them there.
        raise StateError(
            f"state file {path} records the lines sent to {recorded}, not to {destination}: the lines"
            " it settled there would be skipped here. Pass --state PATH for a state of this server, or"
            " --restart to send every line here (same keys and timestamps)"
        )
    with db:
        db.execute("INSERT OR REPLACE INTO meta VALUES ('destination', ?)", (destination,))


def _connect(path: Path, provider: str) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(path, isolation_level="DEFERRED")
        # WAL: a commit per settled batch costs one append, and a crash never leaves half of one.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        # Settled lines land on random pages: a bigger cache and rarer checkpoints keep commits cheap.
        db.execute("PRAGMA cache_size=-16384")
        db.execute("PRAGMA wal_autocheckpoint=8192")
        db.executescript(_SCHEMA)
        meta = dict(db.execute("SELECT name, value FROM meta").fetchall())
        if not meta:
            with db:
                db.executemany(
                    "INSERT INTO meta VALUES (?, ?)", [("version", STATE_VERSION), ("provider", provider)]
                )
            meta = {"version": STATE_VERSION, "provider": provider}
    except sqlite3.DatabaseError as exc:
        with contextlib.suppress(UnboundLocalError):
            db.close()
        if isinstance(exc, sqlite3.OperationalError) and "unable to open" in str(exc):
            raise StateError(f"cannot write state file {path}: {exc}; pass --state") from exc
        raise StateError(f"{path} is not a billing-events state file ({exc}); check --state") from exc
    if meta.get("version") != STATE_VERSION:
        db.close()
        raise StateError(f"state file {path} has unsupported version {meta.get('version')!r}")
    if meta.get("provider") != provider:
        db.close()
        raise StateError(f"state file {path} belongs to a {meta.get('provider')} ingestion, not {provider}")
    columns = {row[1] for row in db.execute("PRAGMA table_info(lines)")}
    if "unsure_since" not in columns:  # written before lines kept the time they became unknown
        with db:
            db.execute("ALTER TABLE lines ADD COLUMN unsure_since REAL")
    return db
