"""Who a line is: its fingerprint in the state, the key it is sent under, the timestamp the CLI gives it.

- The fingerprint is a digest of the event as read (its JSON with sorted keys)
  and its occurrence among identical lines: the n-th copy of a line is
  occurrence n. It does not depend on the line's position, so appending,
  removing or re-sorting lines leaves every other line's fingerprint alone.
- An event without a key gets ``be-<32 hex digits>-<occurrence>``, a digest of
  the event as sent (with its timestamp) and its occurrence.
- A Lago event without a timestamp gets the run's start time (Unix seconds),
  recorded in the state before it is sent; every later run (resumed, re-run,
  ``--restart``, the file edited) sends the line with the recorded timestamp.
  The timestamp is part of the key, so identical lines stamped by runs on
  different days are different events.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Generator, Iterator, Sequence

import orjson

from ._input import Record
from ._providers import Provider
from ._state import State

TIMESTAMP = "timestamp"
# Lines with these outcomes are not sent again; failed and unknown ones are (same key, same timestamp).
SETTLED_FOR_GOOD = frozenset({"delivered", "duplicate", "rejected"})
STDIN_NEEDS_TIMESTAMP = (
    "timestamp: missing, and without a state file (stdin without --state) the CLI cannot give it a"
    " timestamp that a re-run would repeat; Lago's ClickHouse store would bill a re-sent copy twice."
    " Add a timestamp, or pass --state PATH"
)


def _digest(event: dict[str, object]) -> bytes:
    return hashlib.sha256(orjson.dumps(event, option=orjson.OPT_SORT_KEYS)).digest()


def fingerprint(content: bytes, occurrence: int) -> bytes:
    """The state's name for a line: 16 bytes, so a million lines stay a few tens of MB on disk."""
    return hashlib.sha256(content + occurrence.to_bytes(8, "big")).digest()[:16]


def derived_key(content: bytes, occurrence: int) -> str:
    return f"be-{content.hex()[:32]}-{occurrence}"


class Occurrences:
    """Numbers identical lines in input order (1 for the first copy, 2 for the second, ...).

    Counts live in a dict up to ``MEMORY_DIGESTS`` distinct lines, then move to
    a private temporary SQLite database, so a file of millions of distinct
    lines does not hold millions of digests in memory.
    """

    MEMORY_DIGESTS = 200_000

    def __init__(self) -> None:
        self._counts: dict[bytes, int] = {}
        self._db: sqlite3.Connection | None = None

    def number(self, digests: Sequence[bytes]) -> list[int]:
        counts = self._counts if self._db is None else self._from_disk(digests)
        numbers: list[int] = []
        for digest in digests:
            counts[digest] = number = counts.get(digest, 0) + 1
            numbers.append(number)
        if self._db is not None:
            self._db.executemany(
                "INSERT INTO seen VALUES (?, ?) ON CONFLICT DO UPDATE SET copies = excluded.copies",
                counts.items(),
            )
        elif len(counts) > self.MEMORY_DIGESTS:
            self._db = sqlite3.connect("", isolation_level=None)  # "": an anonymous on-disk database
            # Scratch data, gone when the run ends: no journal and no syncing.
            self._db.execute("PRAGMA journal_mode=OFF")
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute(
                "CREATE TABLE seen (digest BLOB PRIMARY KEY, copies INTEGER NOT NULL) WITHOUT ROWID"
            )
            self._db.executemany("INSERT INTO seen VALUES (?, ?)", counts.items())
            self._counts = {}
        return numbers

    def _from_disk(self, digests: Sequence[bytes]) -> dict[bytes, int]:
        assert self._db is not None
        distinct = list(dict.fromkeys(digests))
        marks = ",".join("?" * len(distinct))
        query = f"SELECT digest, copies FROM seen WHERE digest IN ({marks})"
        return {bytes(digest): copies for digest, copies in self._db.execute(query, distinct)}

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


def identify(
    records: Iterator[Record],
    *,
    provider: Provider,
    state: State | None,
    stamp: int | None,
    chunk_records: int,
) -> Generator[Record, None, None]:
    """Give each event its fingerprint, and its key and timestamp when it has none.

    A line the state says is settled for good comes back with ``earlier`` set
    and is not sent again. ``stamp`` is the timestamp for Lago events that have
    none and were never given one; None means there is no state to keep it in.
    """
    occurrences = Occurrences()
    try:
        chunk: list[Record] = []
        for record in records:
            chunk.append(record)
            if len(chunk) >= chunk_records:
                yield from _identify_chunk(chunk, provider, state, stamp, occurrences)
                chunk = []
        if chunk:
            yield from _identify_chunk(chunk, provider, state, stamp, occurrences)
    finally:
        occurrences.close()


def _identify_chunk(
    chunk: list[Record], provider: Provider, state: State | None, stamp: int | None, occurrences: Occurrences
) -> list[Record]:
    readable = [record for record in chunk if record.event is not None]
    digests = [_digest(record.event) for record in readable if record.event is not None]
    numbers = occurrences.number(digests) if digests else []
    prints = [fingerprint(digest, number) for digest, number in zip(digests, numbers, strict=True)]
    known = state.lookup(prints) if state is not None else {}
    new_stamps: list[tuple[bytes, int]] = []
    out: list[Record] = []
    at = -1  # the index of the record among the readable ones
    for record in chunk:
        event = record.event
        if event is None:
            out.append(record)
            continue
        at += 1
        line_print, content, number = prints[at], digests[at], numbers[at]
        earlier = known.get(line_print)
        if earlier is not None and earlier.status in SETTLED_FOR_GOOD:
            out.append(Record(record.line, event, None, line_print, earlier))
            continue
        if provider.stamps_missing_timestamp and event.get(TIMESTAMP) is None:
            if earlier is not None and earlier.stamp is not None:
                event[TIMESTAMP] = earlier.stamp
            elif stamp is None:
                out.append(Record(record.line, None, STDIN_NEEDS_TIMESTAMP))
                continue
            else:
                event[TIMESTAMP] = stamp
                new_stamps.append((line_print, stamp))
            if event.get(provider.key_field) in (None, ""):
                content = _digest(
                    {name: value for name, value in event.items() if name != provider.key_field}
                )
        if event.get(provider.key_field) in (None, ""):
            event[provider.key_field] = derived_key(content, number)
        out.append(Record(record.line, event, None, line_print))
    if state is not None and new_stamps:
        # Recorded before the chunk is sent: a run killed mid-send resends these with the same timestamp.
        state.remember_stamps(new_stamps)
    return out
