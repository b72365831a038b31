"""Who an event is when it carries no key: one derivation for the CLI and for backfills.

- ``content_digest``: SHA-256 of the event as read (its JSON with sorted keys).
- ``Occurrences``: numbers identical events, 1 for the first copy, 2 for the
  second, ... The caller decides the scope: the CLI numbers over the whole
  file; a backfill over a partition that holds every copy of its rows (the
  adapters shuffle identical rows into one partition first).
- ``fingerprint``: the content digest and the occurrence, in 16 bytes; the
  name under which the CLI's state and a backfill's checkpoint keep an event.
- ``key_source``: the digest a derived key is made from, the event as sent
  (with the timestamp it was given); ``give_key``: ``be-<32 hex>-<occurrence>``
  from it, when the event has no key.

None of it depends on a position, a partition id or a worker, so re-reading
the same data anywhere gives the same fingerprints and keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import orjson

from ._spill import SpillMap

Digest = Callable[[dict[str, object]], bytes]


def content_digest(event: dict[str, object]) -> bytes:
    return hashlib.sha256(orjson.dumps(event, option=orjson.OPT_SORT_KEYS)).digest()


def fingerprint(content: bytes, occurrence: int) -> bytes:
    """16 bytes, so a million events stay a few tens of MB in a state file or a checkpoint."""
    return hashlib.sha256(content + occurrence.to_bytes(8, "big")).digest()[:16]


def derived_key(content: bytes, occurrence: int) -> str:
    return f"be-{content.hex()[:32]}-{occurrence}"


def key_source(
    event: dict[str, object],
    key_field: str,
    content: bytes,
    *,
    stamped: bool,
    empty_is_none: bool = False,
    digest: Digest = content_digest,
) -> bytes:
    """The digest the event's derived key is made from: ``content`` (the event as read), unless it was
    ``stamped`` (given a timestamp since) and has no key of its own.

    Then it is the event as sent, without its key field: identical events stamped on different days are
    different events, and events that differ only before stamping (one given the stamp, one that carried
    that very time; an empty key beside a missing one) are copies of one. Number copies by this digest, so
    that such copies are numbered apart and do not share a key.

    ``empty_is_none`` (backfills from layout 4): an empty key counts as none whether or not the event was
    stamped, so a key column cleaned from ``""`` to null keeps the derived keys. ``digest``: how
    ``content`` was made (a backfill's counts whole-number floats as integers).
    """
    key = event.get(key_field)
    if key not in (None, ""):
        return content
    if not stamped and not (empty_is_none and key == ""):
        return content
    unkeyed = (
        {name: value for name, value in event.items() if name != key_field} if key_field in event else event
    )
    return digest(unkeyed)


def give_key(event: dict[str, object], key_field: str, source: bytes, occurrence: int) -> None:
    """Set the event's derived key, from ``source`` (``key_source``), if its key field is missing or empty."""
    if event.get(key_field) in (None, ""):
        event[key_field] = derived_key(source, occurrence)


class Occurrences:
    """Numbers identical events in the order they are given (1 for the first copy, 2 for the second, ...).

    Counts live in a dict up to ``MEMORY_DIGESTS`` distinct events, then move to
    a private temporary SQLite database (``SpillMap``), so millions of distinct
    events do not hold millions of digests in memory.
    """

    MEMORY_DIGESTS = 200_000

    def __init__(self) -> None:
        self._counts: SpillMap[int] = SpillMap(self.MEMORY_DIGESTS)

    def number(self, digests: Sequence[bytes]) -> list[int]:
        counts = self._counts.get_many(digests)
        numbers: list[int] = []
        for digest in digests:
            counts[digest] = number = counts.get(digest, 0) + 1
            numbers.append(number)
        self._counts.put_many(counts)
        return numbers

    def close(self) -> None:
        self._counts.close()
