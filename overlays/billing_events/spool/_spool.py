"""The ``Spool``: the queue interface over the intake and the SQLite store, and the keeper thread.

``track()`` appends to the intake (``_intake``); the keeper thread moves records into SQLite (``_store``),
syncs, checkpoints and publishes the status (``_status``); the adopter thread takes over dead senders'
files (``_adopt``).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import zlib
from collections import Counter, deque
from typing import Any

from .._logs import log_safely
from ..errors import QueueFullError
from ..providers import Pending, ProviderRules, Settled
from . import _fork
from ._adopt import Adoption, Runs
from ._config import SYNCHRONOUS, SpoolConfig
from ._files import Owned, file_prefix, fsync_directory
from ._intake import RECORD, RECORD_SIZE, RUN, Row, Segment
from ._status import publish_status
from ._store import ROW_OVERHEAD, Store, ranges

log = logging.getLogger("billing_events")

# Commits between WAL checkpoints: a 1 KiB page per commit keeps the WAL near 2 MiB.
CHECKPOINT_EVERY = 2000
# Seconds between two scans for files whose owner died.
ADOPT_EVERY = 2.0
# Seconds a new sender spends taking over dead senders' files before it returns; its keeper does the rest.
ADOPT_AT_START = 2.0
# Seconds close() waits for the keeper and adopter threads to finish what they are doing (a checkpoint,
# a chunk of adoption).
KEEPER_JOIN = 5.0
# Seconds between two rewrites of a live file's status (``billing-events spool status`` reads it).
STATUS_EVERY = 1.0
# Intake records move into SQLite after this many seconds, or once this many wait: most events are
# delivered sooner and never enter SQLite at all (their settlement is a marker record in the intake).
MOVE_AFTER = 0.5
MOVE_AT_EVENTS = 20_000
# Seconds between two rounds of the keeper thread.
KEEPER_TICK = 0.01


def waited_through(marks: deque[tuple[float, int]], now: float) -> int | None:
    """The newest sequence number accepted MOVE_AFTER seconds or more before ``now``; its marks go.

    ``marks`` are (when, the newest sequence number then), oldest first. Only records that have waited
    that long move into SQLite: most events are settled sooner, and a record moved a moment before its
    settlement costs an insert and a delete for nothing.
    """
    through = None
    while marks and marks[0][0] <= now - MOVE_AFTER:
        through = marks.popleft()[1]
    return through


class SpoolWriteError(QueueFullError):
    """An event could not be written to the spool (a full disk, an I/O error): treated like a full queue."""


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
        self.kept = 0  # events a stop short left in the file, unsettled (``leave``)
        self._dirty = False
        self._closed = False
        # Records in the intake segments that are not in SQLite yet; moved in one transaction.
        self._unmoved: dict[int, Row] = {}
        self._moved_through = 0
        self._segments: deque[Segment] = deque()
        self._segment_number = 0
        # The next segment, made by the keeper before the current one is full (see _prepare_spare).
        self._spare: Segment | None = None
        self._no_spare_after = -1  # the segment after which making a spare failed: track() makes its own
        self._last_scan = 0.0
        self._salvaged: dict[str, tuple[int, int, int, Runs]] = {}  # damaged files read only in part so far
        config.directory.mkdir(parents=True, exist_ok=True)
        self._sync_each = config.durability == "sync"
        self._prefix = file_prefix(rules.name, destination)
        self._own = Owned.create(config.directory, self._prefix, sync_name=config.durability != "os")
        self._store = Store(self._own.db_path, SYNCHRONOUS[config.durability])
        self._stop = threading.Event()
        _fork.live.add(self)
        self.adopt(time.monotonic() + ADOPT_AT_START)
        self._keeper = threading.Thread(
            target=self._keep, name=f"billing-events-{rules.name}-spool", daemon=True
        )
        # Adoption has a thread of its own: a large dead file takes seconds to minutes, and the keeper's
        # syncs (every fsync_interval under "group") cannot wait for it.
        self._adopter = threading.Thread(
            target=self._adopt_dead, name=f"billing-events-{rules.name}-spool-adopt", daemon=True
        )
        self._keeper.start()
        self._adopter.start()

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

    def offer(self, payload: bytes) -> int:
        """Write the payload when there is room (SpoolWriteError when the write fails); else 0.

        Every track() runs this: the room check, the record and the counts in one call, no helper.
        """
        size = len(payload)
        if self._stored + size + ROW_OVERHEAD > self.max_bytes:
            return 0
        with self._lock:
            if self._closed:
                raise SpoolWriteError("the spool is closed")
            segments = self._segments
            segment = segments[-1] if segments else None
            if segment is None or segment.offset + RECORD_SIZE + size > segment.size:
                segment = self._rotate(size)
            seq = self._next
            self._next = seq + 1  # taken at once: an offer cut short leaves a gap, never two records of a seq
            at, crc = time.time(), zlib.crc32(payload)
            in_window = (
                not self._backlog
                and len(self._items) < self._window_events
                and self._window_size + size <= self._window_bytes
            )
            offset = segment.offset
            try:
                # The payload first: a record becomes visible only when its header's length is written.
                start = offset + RECORD_SIZE
                segment.map[start : start + size] = payload
                RECORD.pack_into(segment.map, offset, size, crc, seq, at)
                segment.offset = start + size
                segment.last_seq = seq
                if self._sync_each:
                    segment.sync()
            except BaseException as exc:
                # Not accepted (its sync failed, or Ctrl-C came in between): after a crash it is not read back.
                segment.retract(offset)
                if isinstance(exc, OSError):
                    raise SpoolWriteError(
                        f"could not sync the spool intake {segment.path.name}: {exc}"
                    ) from None
                raise
            # No call from here to the window's append, the last step: an interrupt (it comes only at a
            # call or a function's start) finds the counts either untouched or complete.
            self._unmoved[seq] = (seq, at, crc, payload)
            # Not _dirty: that asks the keeper to fsync SQLite's WAL, which a record in the intake does not touch.
            self.depth += 1
            self._stored += size + ROW_OVERHEAD
            self._waiting = waiting = self._waiting + 1
            self.bytes += size
            if in_window:
                self._window_size += size
                self._loaded = seq
                self._items.append((seq, payload))
            else:
                self._backlog = True
            return waiting

    def _rotate(self, size: int) -> Segment:
        """With the lock held: start a new intake segment (every few megabytes); returns it.

        The keeper's spare when it has one that follows the current segment and holds the record;
        else a segment made here.
        """
        segments = self._segments
        spare, self._spare = self._spare, None
        if spare is not None and (not segments or spare.number > segments[-1].number) and spare.fits(size):
            segment = spare
        else:
            if spare is not None:
                spare.close(remove=True)  # made for a segment that track() made itself meanwhile
            self._segment_number += 1
            made, why = self._new_segment(self._segment_number, size)
            if made is None:
                raise SpoolWriteError(f"could not extend the spool {self.config.directory}: {why}")
            segment = made
        segment.last_seq = self._next - 1  # its markers may name events up to here
        segments.append(segment)
        return segment

    def _prepare_spare(self) -> None:
        """Keeper: make the next intake segment once the current one is half full, outside the lock.

        Creating a segment (allocating and writing its zeros, a directory sync under "group" and
        "sync") takes milliseconds; made here, the track() that fills a segment only swaps it in.
        A spare that fails is only logged: track() then makes its segment itself, and reports why
        that failed.
        """
        with self._lock:
            segments = self._segments
            if self._closed or not segments:
                return
            current, stale = segments[-1], self._spare
            if stale is not None and stale.number > current.number:
                return  # made, not used yet
            if current.offset * 2 < current.size or current.number == self._no_spare_after:
                return
            # A spare that track() overtook (it made a segment while this one was made) is never used.
            self._spare = None
            self._segment_number += 1
            number = self._segment_number
        if stale is not None:
            stale.close(remove=True)
        spare, why = self._new_segment(number, 0)
        if spare is None:
            # Once per segment, not every tick: a full disk would otherwise log a hundred times a second.
            self._no_spare_after = current.number
            log_safely(log.warning, "could not prepare the next spool intake segment: %s", why)
            return
        with self._lock:
            if self._closed or self._spare is not None:
                spare.close(remove=True)
            else:
                self._spare = spare

    def _new_segment(self, number: int, size: int) -> tuple[Segment | None, str]:
        """Intake segment ``number``, its name synced (but under "os"); or None and why it failed.

        A segment whose name could not be synced is removed: a power loss could lose it with its records.
        """
        try:
            segment = Segment.create(self._own.db_path, number, size)
        except OSError as exc:
            return None, str(exc)
        if self.config.durability != "os":
            try:
                fsync_directory(self.config.directory)  # the new file's name survives a power loss too
            except OSError as exc:
                segment.close(remove=True)
                return None, f"could not sync the directory: {exc}"
        return segment, ""

    def _move_now(self, *, closing: bool = False, through: int | None = None) -> None:
        """With _db_lock held (and _lock not): move the intake records into SQLite, in one transaction.

        ``through``: only the records accepted up to that sequence number (the keeper's timed move);
        None: every record. The records are taken under _lock and inserted without it, so track() goes
        on meanwhile. A settlement that comes in between finds them gone from the intake's list and
        deletes them from SQLite, which it can do only once this transaction has committed (it needs
        _db_lock).
        """
        with self._lock:
            if self._closed and not closing:
                return
            newest = self._next - 1
            through = newest if through is None else min(through, newest)
            if through <= self._moved_through:
                return
            if through == newest:
                rows, self._unmoved = self._unmoved, {}
            else:
                unmoved = self._unmoved
                rows = {seq: row for seq, row in unmoved.items() if seq <= through}
                self._unmoved = {seq: row for seq, row in unmoved.items() if seq > through}
        try:
            self._store.add(rows.values(), through)
        except BaseException:
            with self._lock:
                self._unmoved = {**rows, **self._unmoved}
            raise
        self._dirty = True
        with self._lock:
            self._moved_through = max(self._moved_through, through)

    def read_back(self) -> None:
        """When no event is left in memory but some wait on disk, read the oldest back from SQLite.

        It waits for the disk (and for the keeper's SQLite work): the senders call it without their own
        lock, which ``track()`` needs, and then ``take_batch`` under it.
        """
        if self.must_read_back():
            self._refill()

    def must_read_back(self) -> bool:
        return not self._items and bool(self._backlog) and not self._closed

    def take_batch(self) -> list[Pending]:
        """The next request's worth of the events in memory; they stay in the file until they are settled.

        Memory only: none when every waiting event is on disk and ``read_back`` could not read them.
        """
        rules, key_field = self.rules, self.rules.key_field
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
                self._mark_settled(ranges(in_intake))
            # Counted out now: if the DELETE below fails they stay in the file, for the next sender.
            self.depth -= len(pendings)
            self._stored -= freed
        with self._db_lock:
            if self._closed:
                return
            self._store.tally.update(tally)
            if in_db:
                self._delete(in_db)

    def _mark_settled(self, runs: list[tuple[int, int]]) -> None:
        """With the lock held: settlement markers in the intake (synced at once under "sync")."""
        segments = self._segments
        try:
            for first, last in runs:
                if not segments or not segments[-1].fits(RUN.size):
                    if self._sync_each and segments:
                        segments[-1].sync()  # the markers written into it so far
                    self._rotate(RUN.size)
                segments[-1].append_marker(first, last)
            if self._sync_each:
                segments[-1].sync()
        except (SpoolWriteError, OSError) as exc:
            # Unmarked, they would be sent again after a crash: safe (same keys and timestamps), so go on.
            log_safely(log.error, "could not mark settled events in the spool intake: %s", exc)
        # Not _dirty: the markers are in the intake, which the keeper syncs anyway; SQLite's WAL is untouched.

    def _delete(self, seqs: list[int]) -> bool:
        """With _db_lock held: delete settled rows from SQLite and add the pending tally, in one transaction."""
        try:
            self._store.delete(seqs)
        except sqlite3.Error as exc:
            # They stay in the file: the next sender on it sends them again (same keys and timestamps).
            log_safely(log.error, "%d settled events could not be removed from the spool: %s", len(seqs), exc)
            return False
        self._dirty = True
        return True

    def leave(self, flying: list[Pending], why: str) -> list[Settled]:
        """A sender stops short: its events stay in the file for the next sender; nothing is dead-lettered."""
        with self._lock:
            left = self._waiting + len(flying)
            self._items.clear()
            self._waiting = self._window_size = self.bytes = 0
            self._backlog = False
            self.kept += left
        if left:
            log_safely(
                log.warning,
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
        adoption = Adoption(self.config.directory, self._insert, self._stop, deadline, self._salvaged)
        adoption.run(self._prefix, self._own.lock_path)
        return self.recovered - before

    def close(self) -> None:
        """Checkpoint and close the file; remove it when nothing is left in it."""
        self._stop.set()
        joined_by = time.monotonic() + KEEPER_JOIN
        for thread in (self._keeper, self._adopter):
            if thread is not threading.current_thread():
                thread.join(max(0.0, joined_by - time.monotonic()))
        with self._db_lock:
            with self._lock:
                if self._closed:
                    return
                self._closed = True  # no track() from here on
            moved = False
            try:
                try:
                    self._move_now(closing=True)
                    moved = True
                finally:
                    # Before the lock goes. After a failed move, no checkpoint: its error is the one reported.
                    self._store.close(checkpoint=moved)
            except sqlite3.Error as exc:
                log_safely(log.error, "closing the spool %s: %s", self._own.db_path, exc)
            # Once in SQLite (checkpointed and synced), the intake is not needed.
            for segment in self._segments:
                segment.close(remove=moved)
            self._segments.clear()
            if self._spare is not None:
                self._spare.close(remove=True)  # holds no record
                self._spare = None
            self._store.close_wal()
            self._own.release(remove=self.depth == 0)
        _fork.live.discard(self)

    # -- reading back -------------------------------------------------------

    def _refill(self) -> None:
        """Read the oldest rows not in memory back from SQLite, up to the window (_lock not held).

        The move and the read hold _db_lock alone; _lock only around the counts, as track() needs it.
        """
        with self._db_lock:
            try:
                self._move_now()
            except sqlite3.Error as exc:
                log_safely(
                    log.error, "could not move spooled events into %s: %s", self._own.db_path.name, exc
                )
                return
            with self._lock:
                if self._items or not self._backlog or self._closed:
                    return
                loaded = self._loaded
            try:
                rows = self._store.rows_after(loaded, self._window_events)
            except sqlite3.Error as exc:
                log_safely(
                    log.error, "could not read spooled events back from %s: %s", self._own.db_path.name, exc
                )
                return
            with self._lock:
                # A leave() meanwhile (a close deadline) took the queue's events off the sender: these stay.
                if self._items or not self._backlog or self._closed or self._loaded != loaded:
                    return
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
        rows, aside = self._store.set_aside_rows(seqs)
        size = sum(len(row[3]) for row in rows)
        self.depth -= len(rows)
        self._waiting -= len(rows)
        self.bytes -= size
        self._stored -= size + ROW_OVERHEAD * len(rows)
        log_safely(log.error, "%d damaged spool rows (checksum mismatch) set aside in %s", len(rows), aside)

    # -- adopted rows ---------------------------------------------------------

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
            renumbered = [(first + n, at, crc, payload) for n, (_, at, crc, payload) in enumerate(rows)]
            try:
                self._store.add([*unmoved.values(), *renumbered], through)
            except sqlite3.Error as exc:
                with self._lock:
                    self._unmoved = {**unmoved, **self._unmoved}
                log_safely(log.error, "could not adopt %d spooled events: %s", len(rows), exc)
                return False
            self._dirty = True
            self._durable_now()
            with self._lock:
                self._moved_through = max(self._moved_through, through)
                self.depth += len(rows)
                self._stored += size + ROW_OVERHEAD * len(rows)
                self._waiting += len(rows)
                self.bytes += size
                self.recovered += len(rows)
        return True

    def _durable_now(self) -> None:
        """fsync SQLite's WAL now (not at the keeper's next round), unless durability is "os": adopted rows
        are deleted from the dead file, or noted salvaged, once this returns.

        A sync that fails leaves the rows ours all the same (they are committed; taken again from the dead
        file, they would be sent twice): it is logged, and the keeper's next round syncs again (``_dirty``).
        Until then a power loss could take them, as it could any event of a disk that fails its syncs.
        """
        if self.config.durability == "os":
            return
        try:
            wal_fd = self._store.open_wal()
            if wal_fd is not None:
                os.fsync(wal_fd)
        except OSError as exc:
            log_safely(
                log.error, "could not sync adopted spool events to disk (the keeper tries again): %s", exc
            )

    # -- the keeper thread ----------------------------------------------------

    def _keep(self) -> None:
        """Move intake records into SQLite, sync (group), checkpoint, publish the status."""
        group = self.config.durability == "group"
        interval = min(self.config.fsync_interval, KEEPER_TICK)
        last_sync = last_status = 0.0
        last_move = time.monotonic()
        # (when, the newest sequence number then), a tick apart: what was accepted MOVE_AFTER ago.
        marks: deque[tuple[float, int]] = deque()
        while not self._stop.wait(interval):
            try:
                self._prepare_spare()
                now = time.monotonic()
                marks.append((now, self._next - 1))
                if len(self._unmoved) >= MOVE_AT_EVENTS:
                    last_move = now
                    with self._db_lock:
                        self._move_now()
                elif now - last_move >= MOVE_AFTER:
                    last_move = now
                    through = waited_through(marks, now)
                    if through is not None:
                        with self._db_lock:
                            self._move_now(through=through)
                if not group or now - last_sync >= self.config.fsync_interval:
                    last_sync = now
                    self._drop_moved_segments(self._sync() if group else self._moved_through)
                if self._store.commits >= CHECKPOINT_EVERY:
                    self._checkpoint()
                if now - last_status >= STATUS_EVERY:
                    last_status = now
                    self._publish_status()
            except Exception:
                if self._closed:
                    return  # close() went on without this step (it stopped waiting): nothing is left to keep
                log_safely(log.exception, "spool maintenance failed")

    def _adopt_dead(self) -> None:
        """The adopter thread: every ADOPT_EVERY seconds (counted from the last scan, a flush()'s too),
        take over the files of senders that died."""
        while not self._stop.wait(max(KEEPER_TICK, self._last_scan + ADOPT_EVERY - time.monotonic())):
            if time.monotonic() - self._last_scan < ADOPT_EVERY:
                continue  # a flush() scanned meanwhile
            try:
                self.adopt()
            except Exception:
                if self._closed:
                    return  # close() went on without this scan: what is left is taken over later
                log_safely(log.exception, "taking over dead senders' spool files failed")

    def _sync(self) -> int:
        """msync the intake and fsync SQLite's WAL: what was tracked before this call survives a power loss.

        Returns the last seq moved into SQLite by a commit this call made durable.
        """
        with self._lock:
            if self._closed:
                return 0
            durable = self._moved_through
            segments = list(self._segments)
            wal_fd = self._store.open_wal() if self._dirty else None
            dirty, self._dirty = self._dirty, False
        try:
            for segment in segments:
                segment.sync()
            if wal_fd is not None:
                os.fsync(wal_fd)
        except BaseException:
            if dirty:
                self._dirty = True  # the WAL's fsync is still owed: the next round tries again
            raise
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
            self._store.checkpoint()

    def _publish_status(self) -> None:
        with self._db_lock:
            if self._closed:
                return
            pending, stored, oldest = self.depth, self._stored, self._store.oldest()
        publish_status(self._own.status_path, pending, stored, self.max_bytes, oldest)

    # -- fork -----------------------------------------------------------------

    def before_fork(self) -> None:
        self._db_lock.acquire()
        self._lock.acquire()

    def after_fork_in_parent(self) -> None:
        self._lock.release()
        self._db_lock.release()

    def after_fork_in_child(self) -> None:
        # The parent owns this file. Closing our copy of the lock descriptor keeps the parent's flock
        # (it lives on the shared open file description) and lets the file be adopted once the parent dies.
        self._lock = threading.Lock()
        self._db_lock = threading.Lock()
        self._closed = True
        _fork.inherited.append(self._store.db)
        os.close(self._own.fd)
        self._store.close_wal()
        _fork.live.discard(self)
