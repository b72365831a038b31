"""Lines of one input that give the same key to different events.

The provider keeps one event per key (Togai's ``id``; Lago's ``transaction_id``
within a subscription), and answers the second like the first: a client
catches such a pair inside one ``send()``, but the CLI sends a file in many.
So the run remembers, for each key the file gives, its first line and the
event on it; a later line with the key and a different event is rejected.
Identical lines are no conflict: the provider stores the event once, as asked.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence

import orjson


def key_digest(key: str, scope: object) -> bytes:
    return hashlib.blake2b(orjson.dumps([key, scope], default=repr), digest_size=16).digest()


class KeyRegistry:
    """The first line and event digest of each key, in a dict up to ``MEMORY_KEYS`` keys, then on disk.

    The disk is a private temporary SQLite database (standard library, as ``_keys.Occurrences``), so
    a file of millions of keys is checked in flat memory.
    """

    MEMORY_KEYS = 200_000

    def __init__(self) -> None:
        # key digest -> the first line (8 bytes) and 8 bytes of its event's digest, in one small object
        self._first: dict[bytes, bytes] = {}
        self._db: sqlite3.Connection | None = None

    def conflicts(self, entries: Sequence[tuple[bytes, int, bytes]]) -> list[int | None]:
        """For each ``(key digest, line, event digest)``: the key's first line if it held another event."""
        known = self._first if self._db is None else self._from_disk([entry[0] for entry in entries])
        new: dict[bytes, bytes] = {}
        found: list[int | None] = []
        for key, line, event in entries:
            first = known.get(key) or new.get(key)
            if first is None:
                new[key] = line.to_bytes(8, "big") + event[:8]
                found.append(None)
            else:
                found.append(int.from_bytes(first[:8], "big") if first[8:] != event[:8] else None)
        if self._db is not None:
            self._db.executemany("INSERT INTO first VALUES (?, ?)", new.items())
            return found
        self._first.update(new)
        if len(self._first) > self.MEMORY_KEYS:
            self._db = sqlite3.connect("", isolation_level=None)  # "": an anonymous on-disk database
            # Scratch data, gone when the run ends: no journal and no syncing.
            self._db.execute("PRAGMA journal_mode=OFF")
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute("CREATE TABLE first (key BLOB PRIMARY KEY, seen BLOB NOT NULL) WITHOUT ROWID")
            self._db.executemany("INSERT INTO first VALUES (?, ?)", self._first.items())
            self._first = {}
        return found

    def _from_disk(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        assert self._db is not None
        distinct = list(dict.fromkeys(keys))
        found: dict[bytes, bytes] = {}
        # SQLite allows 32,766 parameters per statement.
        for start in range(0, len(distinct), 30_000):
            part = distinct[start : start + 30_000]
            query = f"SELECT key, seen FROM first WHERE key IN ({','.join('?' * len(part))})"
            found.update((bytes(key), bytes(seen)) for key, seen in self._db.execute(query, part))
        return found

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
