"""The durable spool: the background senders' queue on disk, so that tracked events survive kill -9.

``Spool`` has the same small interface as the in-memory ``EventQueue`` (``push``,
``take_batch``, ``settle``, ``leave``, ``adopt``, ``close``), so the senders have one code path.

Layout: a SQLite file per sender (``NAME.spool``) in front of which sits an *intake*, a few
preallocated files mapped into memory (``NAME.spool.intake-N``). Why (measured on a 2-core VM,
Python 3.11, SQLite 3.40; the figures are in the README):

- **SQLite in WAL mode** (standard library) holds every event that waits longer than half a second,
  the per-file tally of outcomes, and the watermark up to which the intake has been moved into it.
  Its commits are atomic and its WAL checksums discard a torn tail after a power loss.
- **The intake exists because of the GIL.** A SQLite commit per ``track()`` cost 4 µs with
  ``locking_mode=EXCLUSIVE`` (8 to 11 µs without), but every commit is a system call that releases
  the GIL, and taking it back from a busy sender thread pushed ``track()``'s p99 to 300-600 µs and
  halved throughput. A record copied into a ``MAP_SHARED`` mapping is in the kernel's page cache at
  once (so it survives the process being killed) without a system call: ``track()`` stays near 5 µs.
  Records are framed (length, CRC-32, seq, time); the blocks are allocated up front
  (``posix_fallocate``), so a full disk fails when a segment is created, never as a ``SIGBUS``.
- **Moving**: a keeper thread copies intake records into SQLite in one transaction every 0.5 s (or
  every 20,000 records), then drops intake segments that are wholly in SQLite. Most events are
  delivered sooner and never enter SQLite: settling them writes a settlement marker (a run of seqs)
  into the intake, one record written whole or not at all. Recovery takes the intake records above
  the watermark, minus the settled runs.
- **Settling** an event in SQLite deletes its row and adds to the tally in one transaction. Dead
  letters are written before, so a crash in between re-sends (deduplicated by the key and timestamp
  fixed at acceptance) rather than loses.
- **Durability settings**: ``"os"`` (nothing is synced: the page cache survives a killed process, not
  a power loss), ``"group"`` (the keeper msyncs the intake and fsyncs SQLite's WAL every
  ``fsync_interval``; SQLite at ``synchronous=NORMAL``), ``"sync"`` (each record is msynced before
  ``track()`` returns; SQLite at ``synchronous=FULL``).
- **Space**: the keeper checkpoints the WAL (never the caller's thread); deleted rows free pages that
  new rows reuse, and ``auto_vacuum=INCREMENTAL`` returns them when many are free.
- **One file per sender**, named after the provider, a hash of the base URL, the host and the pid,
  with a lock file held by ``flock`` for the owner's life. ``flock`` (not ``fcntl``) because POSIX
  locks are dropped when any descriptor of the file closes, and two senders of one process must
  still exclude each other; a forked child inherits the lock, so it closes its copy at once. No
  thread of ours is inside SQLite while the process forks (the fork hooks hold every spool's lock).
- **Adoption**: a lock that can be taken belongs to a dead process. Its intake is folded into its
  SQLite file, whose rows are then copied into the adopter's in chunks (inserted here, then deleted
  there: a crash in between re-sends, never loses), and its files are removed.
- **Damage**: a file that fails ``quick_check`` is read row by row; a row or intake record whose
  CRC-32 does not match is not sent. The intact ones are kept, the damaged file is renamed
  ``*.damaged-<time>`` and what was set aside is logged.
- **Memory**: payloads up to the in-memory queue's bounds are held in memory; the rest is read back
  from SQLite as the senders need it.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import hashlib
import json
import logging
import mmap
import os
import socket
import sqlite3
import struct
import threading
import time
import weakref
import zlib
from collections import Counter, deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import attrs

from . import _constants as C
from .errors import ConfigurationError, QueueFullError
from .providers import Pending, ProviderRules, Settled

log = logging.getLogger("billing_events")

Durability = Literal["sync", "group", "os"]
SYNCHRONOUS = {"sync": "FULL", "group": "NORMAL", "os": "OFF"}
# What a row costs on disk beyond its payload: the b-tree cell, the seq, time and CRC columns.
ROW_OVERHEAD = 40
# Commits between WAL checkpoints: a 1 KiB page per commit keeps the WAL near 2 MiB.
CHECKPOINT_EVERY = 2000
# Rows copied per transaction when a dead process's file is adopted or salvaged.
MERGE_CHUNK = 2000
# Seconds between two scans for files whose owner died.
ADOPT_EVERY = 2.0
# Seconds a new sender spends taking over dead senders' files before it returns; its keeper does the rest.
ADOPT_AT_START = 2.0
# Seconds close() waits for the keeper thread to finish what it is doing (a checkpoint, a chunk of adoption).
KEEPER_JOIN = 5.0
# Seconds between two rewrites of a live file's status (``billing-events spool status`` reads it).
STATUS_EVERY = 1.0
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY, at REAL NOT NULL,"
    " crc INTEGER NOT NULL, payload BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tally (status TEXT PRIMARY KEY, count INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
INSERT = "INSERT INTO events (seq, at, crc, payload) VALUES (?, ?, ?, ?)"
MOVED_THROUGH = (
    "INSERT INTO meta (name, value) VALUES ('moved_through', ?)"
    " ON CONFLICT (name) DO UPDATE SET value = excluded.value"
)
# An intake record: payload length, its CRC-32, seq, accepted-at time; then the payload.
RECORD = struct.Struct("<IIQd")
RECORD_SIZE = RECORD.size
SEGMENT_BYTES = 8 * 1024 * 1024
PAGE = mmap.PAGESIZE
# The length field of a settlement marker: its payload is the first and last seq of a settled run.
MARKER = 0x80000000
RUN = struct.Struct("<QQ")
# Intake records move into SQLite after this many seconds, or once this many wait: most events are
# delivered sooner and never enter SQLite at all (their settlement is a marker record in the intake).
MOVE_AFTER = 0.5
MOVE_AT_EVENTS = 20_000
# Seconds between two rounds of the keeper thread.
KEEPER_TICK = 0.01


class SpoolWriteError(QueueFullError):
    """An event could not be written to the spool (a full disk, an I/O error): treated like a full queue."""


def _durability(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in SYNCHRONOUS:
        raise ConfigurationError(f"{attribute.name}: must be 'sync', 'group' or 'os', got {value!r}")


def _positive_int(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{attribute.name}: must be a positive integer, got {value!r}")


def _interval(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.001 <= value <= 60:
        raise ConfigurationError(f"{attribute.name}: must be between 0.001 and 60 seconds, got {value!r}")


@attrs.frozen
class SpoolConfig:
    """Where and how a background sender keeps its events on disk (``client.background(spool=...)``)."""

    directory: Path = attrs.field(converter=Path)
    max_bytes: int = attrs.field(default=C.DEFAULT_SPOOL_MAX_BYTES, validator=_positive_int)
    durability: Durability = attrs.field(default="group", validator=_durability)
    fsync_interval: float = attrs.field(default=C.DEFAULT_FSYNC_INTERVAL, validator=_interval)

    @classmethod
    def of(cls, spool: str | os.PathLike[str] | SpoolConfig) -> SpoolConfig:
        if isinstance(spool, SpoolConfig):
            return spool
        if isinstance(spool, str | os.PathLike):
            return cls(Path(spool))
        raise ConfigurationError(
            f"spool: must be a directory path or a SpoolConfig, got {type(spool).__name__}"
        )


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_db(path: Path, synchronous: str) -> sqlite3.Connection:
    # isolation_level=None: every statement outside BEGIN commits on its own (one per track()).
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA locking_mode=EXCLUSIVE")  # before WAL: the WAL index then lives in our memory
    db.execute("PRAGMA page_size=1024")
    db.execute("PRAGMA auto_vacuum=INCREMENTAL")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.execute("PRAGMA wal_autocheckpoint=0")  # the keeper thread checkpoints, never the caller's thread
    db.execute(f"PRAGMA journal_size_limit={4 * 1024 * 1024}")
    for statement in SCHEMA:
        db.execute(statement)
    return db


def _remove(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted sequence numbers as (first, last) runs: one DELETE per run."""
    runs: list[tuple[int, int]] = []
    for seq in sorted(seqs):
        if runs and runs[-1][1] + 1 == seq:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


class _Segment:
    """An intake file mapped in memory: ``track()`` appends records with a memory copy, no system call.

    The pages belong to the kernel's page cache, so a record survives the process being killed the
    moment it is copied; ``msync`` (group and sync durability) makes it survive a power loss.
    """

    def __init__(self, path: Path, size: int) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            # Blocks allocated now: a full disk fails here, never as a SIGBUS on a later memory write.
            os.posix_fallocate(fd, 0, size)
            self.map = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            _remove(path)
            raise
        os.close(fd)  # the mapping holds its own reference
        self.path = path
        self.size = size
        self.offset = 0
        self.synced = 0
        self.last_seq = 0

    def fits(self, size: int) -> bool:
        return self.offset + RECORD.size + size <= self.size

    def retract(self, offset: int) -> None:
        """Take back the last record (its sync failed, so the caller was told it was refused)."""
        self.map[offset : offset + 4] = b"\0\0\0\0"
        self.offset = offset

    def append_marker(self, first: int, last: int) -> None:
        """Note that the events ``first`` to ``last`` are settled: one record, written whole or not at all."""
        offset = self.offset
        start = offset + RECORD.size
        RUN.pack_into(self.map, start, first, last)
        crc = zlib.crc32(self.map[start : start + RUN.size])
        RECORD.pack_into(self.map, offset, MARKER | RUN.size, crc, 0, 0.0)
        self.offset = start + RUN.size

    def sync(self) -> None:
        """msync what was appended since the last call."""
        first = self.synced - self.synced % PAGE
        end = self.offset
        if end > first:
            self.map.flush(first, end - first)
            self.synced = end

    def close(self, remove: bool) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.map.close()
        if remove:
            _remove(self.path)


def _intake_paths(db_path: Path) -> list[Path]:
    """A file's intake segments, oldest first (``NAME.spool.intake-N``; set-aside ones excluded)."""
    prefix = db_path.name + ".intake-"
    numbered = [
        (int(path.name[len(prefix) :]), path)
        for path in db_path.parent.glob(prefix + "*")
        if path.name[len(prefix) :].isdigit()
    ]
    return [path for _, path in sorted(numbered)]


def _intake_rows(db_path: Path, after: int) -> tuple[list[tuple[int, float, int, bytes]], int]:
    """The records of a file's intake segments with a seq above ``after`` that are intact and were not
    settled, in order; and how many records were damaged (a record that fails its CRC is skipped and
    the records after it are kept)."""
    rows, runs, damaged = [], [], 0
    for path in _intake_paths(db_path):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        offset = 0
        while offset + RECORD.size <= len(data):
            length, crc, seq, at = RECORD.unpack_from(data, offset)
            size = length & ~MARKER
            start = offset + RECORD.size
            if length == 0 or start + size > len(data):
                break  # the end of what was written: the rest of a segment is zeros
            payload = data[start : start + size]
            if zlib.crc32(payload) != crc:
                following = start + size
                if following + 4 > len(data) or data[following : following + 4] == b"\0\0\0\0":
                    break  # the last record, cut short by the kill or the crash: it never was accepted
                damaged += 1
            elif length & MARKER:
                if size == RUN.size:
                    runs.append(RUN.unpack(payload))
            elif seq > after:
                rows.append((seq, at, crc, payload))
            offset = start + size
    if runs:
        runs.sort()
        firsts = [first for first, _ in runs]
        rows = [row for row in rows if not _in_runs(row[0], runs, firsts)]
    return rows, damaged


def _in_runs(seq: int, runs: list[tuple[int, int]], firsts: list[int]) -> bool:
    index = bisect.bisect_right(firsts, seq) - 1
    return index >= 0 and runs[index][1] >= seq


def _consume_intake(db_path: Path, damaged: int) -> None:
    """The intake segments of a file whose records were taken: removed, or set aside if some were damaged."""
    for path in _intake_paths(db_path):
        if damaged:
            aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
            path.rename(aside)
            log.error("%d damaged intake records (checksum mismatch) set aside in %s", damaged, aside.name)
        else:
            _remove(path)


class _Owned:
    """A spool file name and the ``flock`` on its lock file, held for the owner's life."""

    def __init__(self, db_path: Path, fd: int) -> None:
        self.db_path = db_path
        self.fd = fd

    @property
    def lock_path(self) -> Path:
        return self.db_path.with_suffix(".lock")

    @property
    def status_path(self) -> Path:
        return self.db_path.with_suffix(".status")

    @classmethod
    def try_lock(cls, lock_path: Path) -> _Owned | None:
        """The lock of ``lock_path`` if its owner is gone; None if it is alive (or the file went away)."""
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # Another adopter may have removed the file between our open and our lock: then it is not ours.
            if os.fstat(fd).st_ino != os.stat(lock_path).st_ino:
                raise FileNotFoundError(lock_path)
        except OSError:
            os.close(fd)
            return None
        return cls(lock_path.with_suffix(".spool"), fd)

    def release(self, remove: bool) -> None:
        if remove:
            _remove(*_intake_paths(self.db_path))
            _remove(self.db_path, _wal(self.db_path), self.status_path, self.lock_path)
        os.close(self.fd)


def _file_prefix(provider: str, destination: str) -> str:
    digest = hashlib.sha256(destination.encode()).hexdigest()[:10]
    return f"{provider}-{digest}-"


_live: weakref.WeakSet[Spool] = weakref.WeakSet()
# Connections a forked child inherited: never used, never closed (closing could disturb the parent's file).
_inherited: list[object] = []


class Spool:
    """Accepted events in a SQLite file; a window of them in memory. Thread-safe."""

    def __init__(
        self,
        rules: ProviderRules,
        config: SpoolConfig,
        destination: str,
        window_events: int,
        window_bytes: int,
    ) -> None:
        self.rules = rules
        self.config = config
        self.max_bytes = config.max_bytes
        self._window_events = window_events
        self._window_bytes = window_bytes
        # _lock guards the queue's state (track() takes only it); _db_lock the SQLite connection. A step
        # that needs both takes _db_lock first, and holds _lock only briefly: SQLite's work (moves,
        # checkpoints and their fsyncs) never holds up track().
        self._lock = threading.Lock()
        self._db_lock = threading.Lock()
        self._items: deque[tuple[int, bytes]] = deque()
        self.bytes = 0  # payload bytes waiting to be taken (in memory or only on disk)
        self._window_size = 0  # payload bytes in memory
        self._waiting = 0
        self._backlog = False  # rows waiting on disk that are not in memory
        self._loaded = 0  # the highest seq ever read into memory or taken
        self._next = 1
        self.depth = 0  # rows in the file, in flight included
        self._stored = 0  # their bytes, as counted against max_bytes
        self.recovered = 0
        self._commits = 0
        self._dirty = False
        self._closed = False
        # Records in the intake segments that are not in SQLite yet; moved in one transaction.
        self._unmoved: dict[int, tuple[int, float, int, bytes]] = {}
        self._moved_through = 0
        self._segments: deque[_Segment] = deque()
        self._segment_number = 0
        # Outcomes of events settled in the intake, added to the SQLite tally with the next transaction.
        self._tally: Counter[str] = Counter()
        self._last_scan = 0.0
        config.directory.mkdir(parents=True, exist_ok=True)
        self._sync_each = config.durability == "sync"
        self._prefix = _file_prefix(rules.name, destination)
        self._own = self._create_file()
        self._db = _open_db(self._own.db_path, SYNCHRONOUS[config.durability])
        self._wal_fd: int | None = None
        self._stop = threading.Event()
        _live.add(self)
        self.adopt(time.monotonic() + ADOPT_AT_START)
        self._keeper = threading.Thread(
            target=self._keep, name=f"billing-events-{rules.name}-spool", daemon=True
        )
        self._keeper.start()

    # -- the queue interface ----------------------------------------------

    def __len__(self) -> int:
        return self._waiting

    @property
    def head_seq(self) -> int:
        """The seq of the oldest event not yet taken (a lower bound while it is only on disk)."""
        items = self._items
        return items[0][0] if items else self._loaded + 1

    @property
    def next_seq(self) -> int:
        return self._next

    def has_room(self, size: int) -> bool:
        return self._stored + size + ROW_OVERHEAD <= self.max_bytes

    def fullness(self) -> str:
        return f"spool {self.config.directory}: {self.depth} events, {self._stored} of {self.max_bytes} bytes"

    def push(self, payload: bytes) -> None:
        size = len(payload)
        with self._lock:
            if self._closed:
                raise SpoolWriteError("the spool is closed")
            seq = self._next
            segments = self._segments
            if not segments or not segments[-1].fits(size):
                self._rotate(size)
            segment = segments[-1]
            row = (seq, time.time(), zlib.crc32(payload), payload)
            # The payload first: a record becomes visible only when its header's length is written.
            offset = segment.offset
            start = offset + RECORD_SIZE
            segment.map[start : start + size] = payload
            RECORD.pack_into(segment.map, offset, size, row[2], seq, row[1])
            segment.offset = start + size
            segment.last_seq = seq
            if self._sync_each:
                try:
                    segment.sync()
                except OSError as exc:
                    segment.retract(offset)
                    raise SpoolWriteError(
                        f"could not sync the spool intake {segment.path.name}: {exc}"
                    ) from None
            self._unmoved[seq] = row
            self._next = seq + 1
            self._dirty = True
            self.depth += 1
            self._stored += size + ROW_OVERHEAD
            self._waiting += 1
            self.bytes += size
            if (
                not self._backlog
                and len(self._items) < self._window_events
                and self._window_size + size <= self._window_bytes
            ):
                self._items.append((seq, payload))
                self._window_size += size
                self._loaded = seq
            else:
                self._backlog = True

    def _rotate(self, size: int) -> None:
        """With the lock held: start a new intake segment (every few megabytes)."""
        self._segment_number += 1
        path = self._own.db_path.with_name(f"{self._own.db_path.name}.intake-{self._segment_number}")
        try:
            segment = _Segment(path, max(SEGMENT_BYTES, 2 * (RECORD.size + size)))
        except OSError as exc:
            raise SpoolWriteError(f"could not extend the spool {self.config.directory}: {exc}") from None
        segment.last_seq = self._next - 1  # its markers may name events up to here
        self._segments.append(segment)
        if self.config.durability != "os":
            _fsync_directory(self.config.directory)  # the new file's name survives a power loss too

    def _move_now(self, *, closing: bool = False) -> None:
        """With _db_lock held (and _lock not): move the intake records into SQLite, in one transaction.

        The records are taken under _lock and inserted without it, so track() goes on meanwhile. A
        settlement that comes in between finds them gone from the intake's list and deletes them from
        SQLite, which it can do only once this transaction has committed (it needs _db_lock).
        """
        with self._lock:
            if self._closed and not closing:
                return
            through = self._next - 1
            if through <= self._moved_through:
                return
            rows, self._unmoved = self._unmoved, {}
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(INSERT, rows.values())
            db.execute(MOVED_THROUGH, (str(through),))
            self._write_tally()
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            with self._lock:
                self._unmoved = {**rows, **self._unmoved}
            raise
        self._tally.clear()
        self._commits += 1
        self._dirty = True
        with self._lock:
            self._moved_through = max(self._moved_through, through)

    def take_batch(self) -> list[Pending]:
        """The next request's worth of events; they stay in the file until they are settled."""
        rules, key_field = self.rules, self.rules.key_field
        if not self._items and self._backlog and not self._closed:
            self._refill()
        with self._lock:
            items = self._items
            batch: list[Pending] = []
            size = rules.envelope_bytes
            while items and rules.fits(len(batch), size, items[0][1]):
                seq, payload = items.popleft()
                size += len(payload) + 1
                batch.append(Pending(None, payload, key_field=key_field, seq=seq))
            taken = size - rules.envelope_bytes - len(batch)
            self._window_size -= taken
            self.bytes -= taken
            self._waiting -= len(batch)
        return batch

    def settle(self, delivered: list[Pending], settled: list[Settled]) -> None:
        """Take settled events out of the spool, in one atomic step.

        Events still only in the intake get a settlement marker there (a memory write); events already
        in SQLite are deleted in one transaction, which also adds to the file's tally of outcomes.
        """
        pendings = [*delivered, *(item.pending for item in settled)]
        if not pendings:
            return
        tally = Counter(item.status.value for item in settled)
        if delivered:
            tally["delivered"] += len(delivered)
        freed = sum(len(p.payload) for p in pendings) + ROW_OVERHEAD * len(pendings)
        with self._lock:
            if self._closed:
                return
            unmoved = self._unmoved
            in_db: list[int] = []
            in_intake: list[int] = []
            for pending in pendings:
                (in_db if unmoved.pop(pending.seq, None) is None else in_intake).append(pending.seq)
            if in_intake:
                self._mark_settled(_ranges(in_intake))
            # Counted out now: if the DELETE below fails they stay in the file, for the next sender.
            self.depth -= len(pendings)
            self._stored -= freed
        with self._db_lock:
            if self._closed:
                return
            self._tally.update(tally)
            if in_db:
                self._delete(in_db)

    def _mark_settled(self, runs: list[tuple[int, int]]) -> None:
        """With the lock held: settlement markers in the intake (synced at once under "sync")."""
        segments = self._segments
        try:
            for first, last in runs:
                if not segments or not segments[-1].fits(RUN.size):
                    self._rotate(RUN.size)
                segments[-1].append_marker(first, last)
            if self._sync_each:
                segments[-1].sync()
        except (SpoolWriteError, OSError) as exc:
            # Unmarked, they would be sent again after a crash: safe (same keys and timestamps), so go on.
            log.error("could not mark settled events in the spool intake: %s", exc)
        self._dirty = True

    def _delete(self, seqs: list[int]) -> bool:
        """With _db_lock held: delete settled rows from SQLite and add the pending tally, in one transaction."""
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("DELETE FROM events WHERE seq BETWEEN ? AND ?", _ranges(seqs))
            self._write_tally()
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            # They stay in the file: the next sender on it sends them again (same keys and timestamps).
            log.error("%d settled events could not be removed from the spool: %s", len(seqs), exc)
            return False
        self._tally.clear()
        self._commits += 1
        self._dirty = True
        return True

    def _write_tally(self) -> None:
        if self._tally:
            self._db.executemany(
                "INSERT INTO tally (status, count) VALUES (?, ?)"
                " ON CONFLICT (status) DO UPDATE SET count = count + excluded.count",
                self._tally.items(),
            )

    def leave(self, flying: list[Pending], why: str) -> list[Settled]:
        """A sender stops short: its events stay in the file for the next sender; nothing is dead-lettered."""
        with self._lock:
            left = self._waiting + len(flying)
            self._items.clear()
            self._waiting = self._window_size = self.bytes = 0
            self._backlog = False
        if left:
            log.warning(
                "%s: %s; %d events stay in the spool %s for the next sender",
                self.rules.name,
                why,
                left,
                self.config.directory,
            )
        return []

    def adopt(self, deadline: float | None = None) -> int:
        """Take over the files of dead senders of the same destination. How many events came in.

        Stops at ``deadline`` (``time.monotonic()``): what is left of a file is taken over later.
        """
        before = self.recovered
        self._last_scan = time.monotonic()
        for lock_path in sorted(self.config.directory.glob(f"{self._prefix}*.lock")):
            if self._stop.is_set() or lock_path == self._own.lock_path:
                continue
            owned = _Owned.try_lock(lock_path)
            if owned is not None:
                finished = False
                try:
                    finished = self._merge(owned.db_path, deadline)
                    if not finished and self._out_of_time(deadline):
                        break
                finally:
                    owned.release(remove=finished)
        return self.recovered - before

    def close(self) -> None:
        """Checkpoint and close the file; remove it when nothing is left in it."""
        self._stop.set()
        if self._keeper is not threading.current_thread():
            self._keeper.join(KEEPER_JOIN)
        with self._db_lock:
            with self._lock:
                if self._closed:
                    return
                self._closed = True  # no track() from here on
            moved = False
            try:
                self._move_now(closing=True)
                moved = True
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                self._db.close()
            except sqlite3.Error as exc:
                log.error("closing the spool %s: %s", self._own.db_path, exc)
            # Once in SQLite (checkpointed and synced), the intake is not needed.
            for segment in self._segments:
                segment.close(remove=moved)
            self._segments.clear()
            if self._wal_fd is not None:
                os.close(self._wal_fd)
                self._wal_fd = None
            self._own.release(remove=self.depth == 0)
        _live.discard(self)

    # -- reading back -------------------------------------------------------

    def _refill(self) -> None:
        """Read the oldest rows not in memory back from SQLite, up to the window (_lock not held)."""
        with self._db_lock:
            try:
                self._move_now()
            except sqlite3.Error as exc:
                log.error("could not move spooled events into %s: %s", self._own.db_path.name, exc)
                return
            with self._lock:
                if self._items or not self._backlog or self._closed:
                    return
                rows = self._db.execute(
                    "SELECT seq, crc, payload FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
                    (self._loaded, self._window_events),
                ).fetchall()
                # Caught up only if nothing was tracked since the move (that is still in the intake alone).
                if len(rows) < self._window_events and self._next - 1 <= self._moved_through:
                    self._backlog = False
                bad: list[int] = []
                for seq, crc, payload in rows:
                    self._loaded = seq
                    if zlib.crc32(payload) != crc:
                        bad.append(seq)
                        continue
                    self._items.append((seq, payload))
                    self._window_size += len(payload)
                    if self._window_size >= self._window_bytes:
                        self._backlog = True
                        break
                if bad:
                    self._set_aside_rows(bad)

    def _set_aside_rows(self, seqs: list[int]) -> None:
        """Rows whose bytes changed on disk: moved to a side file, never sent."""
        aside = self._own.db_path.with_name(f"{self._own.db_path.name}.damaged-rows-{int(time.time())}.jsonl")
        rows = []
        for first, last in _ranges(seqs):
            rows += self._db.execute(
                "SELECT seq, at, crc, payload FROM events WHERE seq BETWEEN ? AND ?", (first, last)
            ).fetchall()
        with aside.open("a") as sink:
            for seq, at, crc, payload in rows:
                sink.write(json.dumps({"seq": seq, "at": at, "crc": crc, "payload": payload.hex()}) + "\n")
        self._db.executemany("DELETE FROM events WHERE seq BETWEEN ? AND ?", _ranges(seqs))
        size = sum(len(row[3]) for row in rows)
        self.depth -= len(rows)
        self._waiting -= len(rows)
        self.bytes -= size
        self._stored -= size + ROW_OVERHEAD * len(rows)
        log.error("%d damaged spool rows (checksum mismatch) set aside in %s", len(rows), aside)

    # -- files --------------------------------------------------------------

    def _create_file(self) -> _Owned:
        host = socket.gethostname().replace("-", "_")[:32] or "host"
        while True:
            name = f"{self._prefix}{host}-{os.getpid()}-{os.urandom(4).hex()}"
            lock_path = self.config.directory / f"{name}.lock"
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)  # an adopter scanning the directory took it first: pick another name
                continue
            if self.config.durability != "os":
                _fsync_directory(self.config.directory)
            return _Owned(lock_path.with_suffix(".spool"), fd)

    def _merge(self, path: Path, deadline: float | None) -> bool:
        """Copy the rows of a dead sender's file into ours. True when the file can be removed."""
        if not path.exists():
            return True
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
                _fold_intake(source, path)
                return self._move_rows(source, path, deadline)
            return self._salvage(source, path, deadline)
        finally:
            if source is not None:
                source.close()

    def _move_rows(self, source: sqlite3.Connection, path: Path, deadline: float | None) -> bool:
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
            if self._out_of_time(deadline):
                return False  # the rest is taken over later, by this sender or another
            if not self._insert(intact):
                log.warning("spool %s is full: %s adopted only in part", self.config.directory, path.name)
                return False
            source.executemany(
                "DELETE FROM events WHERE seq BETWEEN ? AND ?", _ranges(row[0] for row in intact)
            )
            after = rows[-1][0]
        if damaged:
            self._set_aside(path, f"{damaged} rows failed their checksum")
            return False
        return True

    def _salvage(self, source: sqlite3.Connection | None, path: Path, deadline: float | None) -> bool:
        """From a damaged file: every row that can still be read and passes its checksum."""
        kept, unreadable = 0, 0
        seen: set[int] = set()
        if source is not None:
            try:
                first, last = source.execute("SELECT min(seq), max(seq) FROM events").fetchone()
            except sqlite3.DatabaseError:
                first, last = 1, max(1, path.stat().st_size // ROW_OVERHEAD)
            for low in range(first or 1, (last or 0) + 1, MERGE_CHUNK):
                high = low + MERGE_CHUNK - 1
                rows, lost = _readable_rows(source, low, high)
                unreadable += lost
                intact = list(
                    {row[0]: row for row in rows if low <= row[0] <= high and _intact(row)}.values()
                )
                if self._out_of_time(deadline) or not self._insert(intact):
                    break
                kept += len(intact)
                seen.update(row[0] for row in intact)
        # The intake records SQLite had not received yet (or that it lost with the damaged part).
        found, damaged = _intake_rows(path, 0)
        intake = [row for row in found if row[0] not in seen]
        if self._insert(intake):
            kept += len(intake)
            _consume_intake(path, damaged)
        self._set_aside(
            path,
            f"the file is damaged; {kept} intact events were kept"
            + (f", {unreadable} seqs could not be read" if unreadable else ""),
        )
        return False

    def _out_of_time(self, deadline: float | None) -> bool:
        return self._stop.is_set() or (deadline is not None and time.monotonic() > deadline)

    def _set_aside(self, path: Path, why: str) -> None:
        aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
        path.rename(aside)
        if _wal(path).exists():
            _wal(path).rename(_wal(aside))
        log.error("spool file %s set aside as %s: %s", path.name, aside.name, why)

    def _insert(self, rows: list[tuple[Any, ...]]) -> bool:
        """Adopted rows join the end of ours, in one transaction; False when they do not fit."""
        if not rows:
            return True
        size = sum(len(row[3]) for row in rows)
        with self._db_lock:
            with self._lock:
                if self._closed or self._stored + size + ROW_OVERHEAD * len(rows) > self.max_bytes:
                    return False
                first = self._next
                through = first + len(rows) - 1
                self._next = through + 1
                unmoved, self._unmoved = self._unmoved, {}
                self._backlog = True  # from here on, new events come after these, read back in order
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(INSERT, unmoved.values())
                db.executemany(
                    INSERT, [(first + n, at, crc, payload) for n, (_, at, crc, payload) in enumerate(rows)]
                )
                db.execute(MOVED_THROUGH, (str(through),))
                self._write_tally()
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
                with self._lock:
                    self._unmoved = {**unmoved, **self._unmoved}
                log.error("could not adopt %d spooled events: %s", len(rows), exc)
                return False
            self._tally.clear()
            self._commits += 1
            self._dirty = True
            with self._lock:
                self._moved_through = max(self._moved_through, through)
                self.depth += len(rows)
                self._stored += size + ROW_OVERHEAD * len(rows)
                self._waiting += len(rows)
                self.bytes += size
                self.recovered += len(rows)
        return True

    # -- the keeper thread ----------------------------------------------------

    def _keep(self) -> None:
        """Move intake records into SQLite, sync (group), checkpoint, publish the status, adopt."""
        group = self.config.durability == "group"
        interval = min(self.config.fsync_interval, KEEPER_TICK)
        last_sync = last_status = 0.0
        last_move = time.monotonic()
        while not self._stop.wait(interval):
            try:
                now = time.monotonic()
                if len(self._unmoved) >= MOVE_AT_EVENTS or now - last_move >= MOVE_AFTER:
                    last_move = now
                    with self._db_lock:
                        self._move_now()
                if not group or now - last_sync >= self.config.fsync_interval:
                    last_sync = now
                    self._drop_moved_segments(self._sync() if group else self._moved_through)
                if self._commits >= CHECKPOINT_EVERY:
                    self._checkpoint()
                if now - last_status >= STATUS_EVERY:
                    last_status = now
                    self._publish_status()
                if now - self._last_scan >= ADOPT_EVERY:
                    self.adopt()
            except Exception:
                log.exception("spool maintenance failed")

    def _sync(self) -> int:
        """msync the intake and fsync SQLite's WAL: what was tracked before this call survives a power loss.

        Returns the last seq moved into SQLite by a commit this call made durable.
        """
        with self._lock:
            if self._closed:
                return 0
            durable = self._moved_through
            segments = list(self._segments)
            dirty, self._dirty = self._dirty, False
            if dirty and self._wal_fd is None and _wal(self._own.db_path).exists():
                self._wal_fd = os.open(_wal(self._own.db_path), os.O_RDONLY | os.O_CLOEXEC)
                _fsync_directory(self.config.directory)
            wal_fd = self._wal_fd
        for segment in segments:
            segment.sync()
        if dirty and wal_fd is not None:
            os.fsync(wal_fd)
        return durable

    def _drop_moved_segments(self, through: int) -> None:
        """Intake segments whose records are all in SQLite (through a durable commit, under group) go."""
        with self._lock:
            segments = self._segments
            while len(segments) > 1 and segments[0].last_seq <= through:
                segments.popleft().close(remove=True)

    def _checkpoint(self) -> None:
        with self._db_lock:
            if self._closed:
                return
            self._commits = 0
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            free, total = (
                self._db.execute("PRAGMA freelist_count").fetchone()[0],
                self._db.execute("PRAGMA page_count").fetchone()[0],
            )
            if free > 1024 and free * 4 > total:
                self._db.execute(f"PRAGMA incremental_vacuum({free // 2})")

    def _publish_status(self) -> None:
        with self._db_lock:
            if self._closed:
                return
            row = self._db.execute("SELECT at FROM events ORDER BY seq LIMIT 1").fetchone()
            status = {
                "pid": os.getpid(),
                "pending": self.depth,
                "bytes": self._stored,
                "max_bytes": self.max_bytes,
                "oldest": row[0] if row else None,
                "updated": time.time(),
            }
        temporary = self._own.status_path.with_suffix(".status-new")
        temporary.write_text(json.dumps(status))
        temporary.replace(self._own.status_path)

    # -- fork -----------------------------------------------------------------

    def _before_fork(self) -> None:
        self._db_lock.acquire()
        self._lock.acquire()

    def _after_fork_in_parent(self) -> None:
        self._lock.release()
        self._db_lock.release()

    def _after_fork_in_child(self) -> None:
        # The parent owns this file. Closing our copy of the lock descriptor keeps the parent's flock
        # (it lives on the shared open file description) and lets the file be adopted once the parent dies.
        self._lock = threading.Lock()
        self._db_lock = threading.Lock()
        self._closed = True
        _inherited.append(self._db)
        os.close(self._own.fd)
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None
        _live.discard(self)


def _moved_through(source: sqlite3.Connection) -> int:
    row = source.execute("SELECT value FROM meta WHERE name = 'moved_through'").fetchone()
    return int(row[0]) if row else 0


def _pending_intake(
    source: sqlite3.Connection, path: Path
) -> tuple[list[tuple[int, float, int, bytes]], int]:
    """A dead sender's intake records that SQLite has not got and that were not settled; and the damaged count."""
    return _intake_rows(path, _moved_through(source))


def _fold_intake(source: sqlite3.Connection, path: Path) -> None:
    """Move a dead sender's intake records into its own SQLite file (idempotent), then drop the intake."""
    rows, damaged = _pending_intake(source, path)
    if rows:
        source.execute("BEGIN IMMEDIATE")
        source.executemany(INSERT.replace("INSERT", "INSERT OR IGNORE", 1), rows)
        source.execute(MOVED_THROUGH, (str(rows[-1][0]),))
        source.execute("COMMIT")
    _consume_intake(path, damaged)


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
    query = "SELECT seq, at, crc, payload FROM events WHERE seq BETWEEN ? AND ?"
    try:
        return source.execute(query, (low, high)).fetchall(), 0
    except sqlite3.DatabaseError:
        pass
    rows, lost = [], 0
    for seq in range(low, high + 1):
        try:
            rows += source.execute(query, (seq, seq)).fetchall()
        except sqlite3.DatabaseError:
            lost += 1
    return rows, lost


_forking: list[Spool] = []


def _before_fork() -> None:
    _forking[:] = list(_live)
    for spool in _forking:
        spool._before_fork()


def _after_fork_in_parent() -> None:
    for spool in _forking:
        spool._after_fork_in_parent()
    _forking.clear()


def _after_fork_in_child() -> None:
    for spool in _forking:
        spool._after_fork_in_child()
    _forking.clear()


# No thread of ours is inside SQLite while the process forks: a child would inherit its mutexes held.
os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)


# -- inspection -----------------------------------------------------------------


@attrs.frozen
class SpoolFileStatus:
    """What ``billing-events spool status`` shows for one file."""

    name: str
    live: bool
    pid: int | None
    pending: int | None
    bytes: int | None
    oldest: float | None
    settled: dict[str, int]
    problem: str | None = None
    updated: float | None = None
    """When a live owner last published its figures (they are refreshed every second)."""


def spool_status(directory: str | os.PathLike[str]) -> list[SpoolFileStatus]:
    """The files of a spool directory: live ones from their owner's status, dead ones read directly."""
    found = []
    for lock_path in sorted(Path(directory).glob("*.lock")):
        owned = _Owned.try_lock(lock_path)
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
    pid = _owner_pid(name)
    try:
        status = json.loads(lock_path.with_suffix(".status").read_text())
    except (OSError, ValueError):
        return SpoolFileStatus(name, True, pid, None, None, None, {}, "no status published yet")
    return SpoolFileStatus(
        name, True, pid, status["pending"], status["bytes"], status["oldest"], {}, updated=status["updated"]
    )


def _owner_pid(name: str) -> int | None:
    """The pid in a spool file's name (provider-destination-host-pid-random.spool)."""
    parts = name.rsplit("-", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None


def _dead_status(path: Path) -> SpoolFileStatus:
    if not path.exists():
        return SpoolFileStatus(path.name, False, None, 0, 0, None, {})
    try:
        db = sqlite3.connect(path, isolation_level=None)
        try:
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            pending, size, oldest = db.execute(
                "SELECT count(*), coalesce(sum(length(payload)), 0), min(at) FROM events"
            ).fetchone()
            settled = dict(db.execute("SELECT status, count FROM tally").fetchall())
            intake, _ = _pending_intake(db, path)
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        return SpoolFileStatus(path.name, False, None, None, None, None, {}, f"unreadable: {exc}")
    pending += len(intake)
    size += sum(len(row[3]) for row in intake)
    if intake and oldest is None:
        oldest = intake[0][1]
    pid = _owner_pid(path.name)
    return SpoolFileStatus(path.name, False, pid, pending, size + ROW_OVERHEAD * pending, oldest, settled)
