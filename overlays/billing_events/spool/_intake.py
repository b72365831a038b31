"""The intake: preallocated files mapped in memory that ``track()`` appends to without a system call.

A record is framed (payload length, CRC-32, seq, accepted-at time); a settlement marker is a record
whose length has the ``MARKER`` bit set and whose payload is the first and last seq of a settled run.
This module writes segments and reads back what a file's segments hold.
"""

from __future__ import annotations

import bisect
import contextlib
import ctypes
import logging
import mmap
import os
import platform
import re
import struct
import sys
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

from .._logs import log_safely
from ._files import aside_path, intake_path, intake_paths, remove_files

log = logging.getLogger("billing_events")

# An event as the intake and SQLite keep it: seq, accepted-at time, CRC-32 of the payload, payload.
Row = tuple[int, float, int, bytes]
# An intake record: payload length, its CRC-32, seq, accepted-at time; then the payload.
RECORD = struct.Struct("<IIQd")
RECORD_SIZE = RECORD.size
SEGMENT_BYTES = 8 * 1024 * 1024
PAGE = mmap.PAGESIZE
# The length field of a settlement marker: its payload is the first and last seq of a settled run.
MARKER = 0x80000000
RUN = struct.Struct("<QQ")


# What a new segment is filled with, a piece at a time (see _write_zeros).
_ZEROS = bytes(1 << 20)


def _write_zeros(fd: int, size: int) -> None:
    """Write the file's zeros once, with the GIL released, so track()'s copies into the map stay cheap.

    Space that ``posix_fallocate`` reserved is "unwritten": the first store to each of its pages
    faults into the file system, which converts the block (about 0.6 µs a record on ext4, paid by
    track()). Zeros written here take that cost once a segment, in a few milliseconds.
    """
    offset = 0
    while offset < size:
        offset += os.pwrite(fd, memoryview(_ZEROS)[: min(len(_ZEROS), size - offset)], offset)


def _gil_free_msync() -> Callable[[int, int], None] | None:
    """libc's ``msync(MS_SYNC)`` called through ctypes, which releases the GIL for the call; None off Linux.

    ``mmap.flush`` holds the GIL through its msync (CPython 3.11 to 3.13), so every thread of the
    process, ``track()`` and the workers included, stood still while the keeper waited for the disk
    (milliseconds a sync under "group", 20 times a second by default), and while ``track()`` synced
    its record under "sync". ``MS_SYNC`` is 4 on Linux but for Alpha and PA-RISC; there, and off
    Linux, ``mmap.flush`` is used.
    """
    if sys.platform != "linux" or platform.machine().lower().startswith(("alpha", "parisc")):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).msync
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int

    def msync(address: int, length: int) -> None:
        if function(address, length, 4) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))

    return msync


_msync = _gil_free_msync()


def _address_of(mapping: mmap.mmap) -> int:
    """Where the mapping starts in memory (the view taken to read it is let go at once)."""
    view = ctypes.c_char.from_buffer(mapping)
    try:
        return ctypes.addressof(view)
    finally:
        del view  # an exported buffer would keep the map from closing


class Segment:
    """An intake file mapped in memory: ``track()`` appends records with a memory copy, no system call.

    The pages belong to the kernel's page cache, so a record survives the process being killed the
    moment it is copied; ``msync`` (group and sync durability) makes it survive a power loss.
    """

    def __init__(self, path: Path, size: int, number: int) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            # Blocks allocated now: a full disk fails here, never as a SIGBUS on a later memory write.
            os.posix_fallocate(fd, 0, size)
            _write_zeros(fd, size)
            self.map = mmap.mmap(fd, size)
            self._address = _address_of(self.map) if _msync is not None else 0
        except BaseException:
            os.close(fd)
            remove_files(path)
            raise
        os.close(fd)  # the mapping holds its own reference
        # A close that comes while the GIL-free msync runs leaves the unmapping to that sync.
        self._guard = threading.Lock()
        self._syncing = 0
        self._closing = False
        self.path = path
        self.number = number  # its place among the file's segments
        self.size = size
        self.offset = 0
        self.synced = 0
        self.last_seq = 0

    @classmethod
    def create(cls, db_path: Path, number: int, payload_size: int) -> Segment:
        """Intake segment ``number`` of a file, with room for at least two records of ``payload_size``."""
        return cls(intake_path(db_path, number), max(SEGMENT_BYTES, 2 * (RECORD.size + payload_size)), number)

    def fits(self, size: int) -> bool:
        return self.offset + RECORD.size + size <= self.size

    def retract(self, offset: int) -> None:
        """Take back the last record (its sync failed, or Ctrl-C cut its offer short): never accepted.

        The next sync covers the zeroed length too, even when the record itself was synced.
        """
        self.map[offset : offset + 4] = b"\0\0\0\0"
        self.offset = offset
        self.synced = min(self.synced, offset)

    def append_marker(self, first: int, last: int) -> None:
        """Note that the events ``first`` to ``last`` are settled: one record, written whole or not at all."""
        offset = self.offset
        start = offset + RECORD.size
        RUN.pack_into(self.map, start, first, last)
        crc = zlib.crc32(self.map[start : start + RUN.size])
        RECORD.pack_into(self.map, offset, MARKER | RUN.size, crc, 0, 0.0)
        self.offset = start + RUN.size

    def sync(self) -> None:
        """msync what was appended since the last call (ValueError once the segment is closed)."""
        first = self.synced - self.synced % PAGE
        end = self.offset
        if end <= first:
            return
        if _msync is None:
            self.map.flush(first, end - first)
            self.synced = end
            return
        with self._guard:
            if self._closing:
                raise ValueError("the segment is closed")  # as mmap.flush says it
            self._syncing += 1
        try:
            _msync(self._address + first, end - first)
        finally:
            with self._guard:
                self._syncing -= 1
                closed, unmap = self._closing, self._closing and not self._syncing
            if unmap:
                self._unmap()
        if closed:
            raise ValueError("the segment was closed while it synced")
        self.synced = end

    def close(self, remove: bool) -> None:
        """Unmap (at once, or when a sync in progress ends) and, with ``remove``, delete the file."""
        with self._guard:
            self._closing = True
            unmap = not self._syncing
        if unmap:
            self._unmap()
        if remove:
            remove_files(self.path)  # a sync still running keeps the mapping, and the inode, until it ends

    def _unmap(self) -> None:
        with contextlib.suppress(ValueError, OSError):
            self.map.close()


def intake_rows(db_path: Path, after: int) -> tuple[list[Row], int]:
    """The records of a file's intake segments with a seq above ``after`` that are intact and were not
    settled, in order; and how many records were damaged (a record that fails its CRC is skipped and
    the records after it are kept).

    Raises OSError when a segment cannot be read: the caller keeps the intake for a later read, as
    records skipped here would be lost once it is consumed.
    """
    rows, runs, damaged = [], [], 0
    for path in intake_paths(db_path):
        data = path.read_bytes()
        offset = 0
        while offset + RECORD.size <= len(data):
            length, crc, seq, at = RECORD.unpack_from(data, offset)
            size = length & ~MARKER
            start = offset + RECORD.size
            if length == 0:
                # The end of what was written (zeros follow, or a record whose header a kill came before:
                # never accepted), unless intact records follow: then a zeroed length (a zeroed sector).
                resumed = _next_record(data, offset + 1)
                if resumed is None:
                    break
                damaged += 1
                offset = resumed
                continue
            following = start + size
            payload = data[start:following]
            if following > len(data) or zlib.crc32(payload) != crc:
                tail = data[following : following + 4]
                if following <= len(data) and (len(tail) < 4 or tail == b"\0\0\0\0"):
                    break  # the last record, cut short by the kill or the crash: it never was accepted
                # A damaged record (its length too, maybe): the records after it are found by their checksums.
                damaged += 1
                resumed = _next_record(data, offset + 1)
                if resumed is None:
                    break
                offset = resumed
                continue
            if length & MARKER:
                if size == RUN.size:
                    runs.append(RUN.unpack(payload))
            elif seq > after:
                rows.append((seq, at, crc, payload))
            offset = following
    if runs:
        runs.sort()
        firsts = [first for first, _ in runs]
        rows = [row for row in rows if not _in_runs(row[0], runs, firsts)]
    return rows, damaged


# Where a record may start: a length of 1 to 2**24 - 1 bytes, or a marker's (the MARKER bit set).
_RECORD_START = re.compile(rb"(?=(?:[^\x00]..|\x00[^\x00].|\x00\x00[^\x00])[\x00\x80])", re.DOTALL)


def _intact_at(data: bytes, offset: int) -> bool:
    """Whether a whole record (or marker) whose payload matches its CRC-32 starts at ``offset``."""
    if offset + RECORD.size > len(data):
        return False
    length, crc, seq, _ = RECORD.unpack_from(data, offset)
    size: int = length & ~MARKER
    start = offset + RECORD.size
    if start + size > len(data) or (size != RUN.size if length & MARKER else seq == 0):
        return False
    return bool(zlib.crc32(memoryview(data)[start : start + size]) == crc)


def _next_record(data: bytes, offset: int) -> int | None:
    """After a damaged record: where the next intact one starts, or None."""
    if data.count(0, offset) == len(data) - offset:
        return None  # zeros to the end, the usual rest of a segment: found at once, not scanned for records
    for match in _RECORD_START.finditer(data, offset):
        if _intact_at(data, match.start()):
            return match.start()
    return None


def _in_runs(seq: int, runs: list[tuple[int, int]], firsts: list[int]) -> bool:
    index = bisect.bisect_right(firsts, seq) - 1
    return index >= 0 and runs[index][1] >= seq


def consume_intake(db_path: Path, damaged: int) -> None:
    """The intake segments of a file whose records were taken: removed, or set aside if some were damaged."""
    for path in intake_paths(db_path):
        if damaged:
            aside = aside_path(path)
            path.rename(aside)
            log_safely(
                log.error,
                "%d damaged intake records (checksum mismatch) set aside in %s",
                damaged,
                aside.name,
            )
        else:
            remove_files(path)
