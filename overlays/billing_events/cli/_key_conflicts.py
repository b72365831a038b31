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
from collections.abc import Sequence

import orjson

from .._spill import SpillMap


def key_digest(key: str, scope: object) -> bytes:
    return hashlib.blake2b(orjson.dumps([key, scope], default=repr), digest_size=16).digest()


class KeyRegistry:
    """The first line and event digest of each key, in a dict up to ``MEMORY_KEYS`` keys, then on disk
    (``SpillMap``), so a file of millions of keys is checked in flat memory."""

    MEMORY_KEYS = 200_000

    def __init__(self) -> None:
        # key digest -> the first line (8 bytes) and 8 bytes of its event's digest, in one small object
        self._first: SpillMap[bytes] = SpillMap(self.MEMORY_KEYS)

    def conflicts(self, entries: Sequence[tuple[bytes, int, bytes]]) -> list[int | None]:
        """For each ``(key digest, line, event digest)``: the key's first line if it held another event."""
        known = self._first.get_many([entry[0] for entry in entries])
        new: dict[bytes, bytes] = {}
        found: list[int | None] = []
        for key, line, event in entries:
            first = known.get(key) or new.get(key)
            if first is None:
                new[key] = line.to_bytes(8, "big") + event[:8]
                found.append(None)
            else:
                found.append(int.from_bytes(first[:8], "big") if first[8:] != event[:8] else None)
        self._first.put_many(new)
        return found

    def close(self) -> None:
        self._first.close()
