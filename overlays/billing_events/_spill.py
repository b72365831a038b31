"""A map from digests to small values that moves from memory to a scratch SQLite file when it grows.

Keys of a whole input (occurrences of identical events, a key's first line) must be remembered for
files of millions of lines in flat memory. SQLite is in the standard library, looks keys up on disk
without loading the set, and needs nothing to clean up: an anonymous database is deleted when it is
closed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Generic, TypeVar

V = TypeVar("V", int, bytes)

# SQLite allows 32,766 parameters per statement.
_LOOKUP_CHUNK = 30_000


class SpillMap(Generic[V]):
    """``bytes`` keys to ``int`` or ``bytes`` values: a dict up to ``memory_keys`` keys, then on disk."""

    def __init__(self, memory_keys: int = 200_000) -> None:
        self.memory_keys = memory_keys
        self._memory: dict[bytes, V] = {}
        self._db: sqlite3.Connection | None = None

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, V]:
        """The values of those ``keys`` that are in the map (a new dict: the caller may change it)."""
        if self._db is None:
            memory = self._memory
            return {key: memory[key] for key in keys if key in memory}
        distinct = list(dict.fromkeys(keys))
        found: dict[bytes, V] = {}
        for start in range(0, len(distinct), _LOOKUP_CHUNK):
            part = distinct[start : start + _LOOKUP_CHUNK]
            query = f"SELECT key, value FROM map WHERE key IN ({','.join('?' * len(part))})"
            found.update((bytes(key), value) for key, value in self._db.execute(query, part))
        return found

    def put_many(self, items: Mapping[bytes, V]) -> None:
        """Set (or replace) these values; past ``memory_keys`` keys, the map moves to disk."""
        if self._db is not None:
            self._db.executemany(
                "INSERT INTO map VALUES (?, ?) ON CONFLICT DO UPDATE SET value = excluded.value",
                items.items(),
            )
            return
        self._memory.update(items)
        if len(self._memory) > self.memory_keys:
            self._db = sqlite3.connect("", isolation_level=None)  # "": an anonymous on-disk database
            # Scratch data, gone when the run ends: no journal and no syncing.
            self._db.execute("PRAGMA journal_mode=OFF")
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute("CREATE TABLE map (key BLOB PRIMARY KEY, value NOT NULL) WITHOUT ROWID")
            self._db.executemany("INSERT INTO map VALUES (?, ?)", self._memory.items())
            self._memory = {}

    @property
    def on_disk(self) -> bool:
        return self._db is not None

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
