"""The durable spool: the background senders' queue on disk, so that tracked events survive kill -9.

``Spool`` has the same small interface as the in-memory ``EventQueue`` (``offer``,
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

Modules, one concern each: ``_config`` (``SpoolConfig``), ``_files`` (names, ownership, ``flock``),
``_intake`` (the mapped segments and their records), ``_store`` (the SQLite file), ``_adopt`` (dead
senders' files), ``_fork`` (fork safety), ``_status`` (``billing-events spool status``), and
``_spool`` (the ``Spool`` that composes them, and its keeper thread).
"""

from __future__ import annotations

from ._config import Durability, SpoolConfig
from ._spool import Spool, SpoolWriteError
from ._status import SpoolFileStatus, spool_status

__all__ = ["Durability", "Spool", "SpoolConfig", "SpoolFileStatus", "SpoolWriteError", "spool_status"]
