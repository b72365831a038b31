"""Who a line is: its fingerprint in the state, the key it is sent under, the timestamp the CLI gives it.

- The fingerprint is a digest of the event as read (its JSON with sorted keys)
  and its occurrence among identical lines of the file: the n-th copy of a line
  is occurrence n. It does not depend on the line's position, so appending,
  removing or re-sorting lines leaves every other line's fingerprint alone.
- An event without a key gets ``be-<32 hex digits>-<occurrence>``, a digest of
  the event as sent (with its timestamp) and its occurrence. ``billing_events._keys``
  owns these derivations; backfills use the same ones.
- A Lago event without a timestamp gets the run's start time (Unix seconds),
  recorded in the state before it is sent; every later run (resumed, re-run,
  ``--restart``, the file edited) sends the line with the recorded timestamp.
  The timestamp is part of the key, so identical lines stamped by runs on
  different days are different events.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator

import attrs

from .._keys import Occurrences, content_digest, fingerprint, give_key, key_source
from ..outcomes import past_window, past_window_reason
from ._input import Record
from ._key_conflicts import KeyRegistry, key_digest
from ._providers import PAST_WINDOW_REMEDY, Provider
from ._state import Known, State
from ._text import clip

TIMESTAMP = "timestamp"
# Lines with these outcomes are not sent again; failed and unknown ones are (same key, same timestamp).
SETTLED_FOR_GOOD = frozenset({"delivered", "duplicate", "rejected"})
STDIN_NEEDS_TIMESTAMP = (
    "timestamp: missing, and without a state file (stdin without --state) the CLI cannot give it a"
    " timestamp that a re-run would repeat; Lago's ClickHouse store would bill a re-sent copy twice."
    " Add a timestamp, or pass --state PATH"
)


def identify(
    records: Iterator[Record],
    *,
    provider: Provider,
    state: State | None,
    stamp: int | None,
    chunk_records: int,
    stale: float | None = None,
) -> Generator[Record, None, None]:
    """Give each event its fingerprint, and its key and timestamp when it has none.

    A line the state says is settled for good comes back with ``earlier`` set
    and is not sent again. ``stamp`` is the timestamp for Lago events that have
    none and were never given one; None means there is no state to keep it in.
    So does a line that ended ``unknown`` before ``stale`` (Unix time; see
    ``outcomes.stale_before``): the provider may have it, and no longer its key.
    """
    occurrences = Occurrences()
    keys = KeyRegistry()
    try:
        chunk: list[Record] = []
        for record in records:
            chunk.append(record)
            if len(chunk) >= chunk_records:
                yield from _identify_chunk(chunk, provider, state, stamp, occurrences, keys, stale)
                chunk = []
        if chunk:
            yield from _identify_chunk(chunk, provider, state, stamp, occurrences, keys, stale)
    finally:
        occurrences.close()
        keys.close()


def stamp_problem(event: dict[str, object], provider: Provider, *, stamps_kept: bool) -> str | None:
    """Why the run refuses a Lago event without a timestamp: no state keeps the one it would get
    (``stamps_kept`` False: stdin without ``--state``), so a re-run could not repeat it."""
    return None if stamps_kept or not _needs_stamp(event, provider) else STDIN_NEEDS_TIMESTAMP


def _needs_stamp(event: dict[str, object], provider: Provider) -> bool:
    return provider.stamps_missing_timestamp and event.get(TIMESTAMP) is None


def key_conflicts(
    events: list[dict[str, object]],
    digests: list[bytes],
    lines: list[int],
    provider: Provider,
    keys: KeyRegistry,
) -> dict[int, str]:
    """Why each event (by index) that reuses a key of an earlier line for a different event is rejected."""
    entries: list[tuple[bytes, int, bytes]] = []
    at: list[int] = []
    for index, event in enumerate(events):
        key = event.get(provider.key_field)
        if isinstance(key, str) and key:
            scope = event.get(provider.key_scope) if provider.key_scope else None
            entries.append((key_digest(key, scope), lines[index], digests[index]))
            at.append(index)
    reasons: dict[int, str] = {}
    for index, first in zip(at, keys.conflicts(entries), strict=True):
        if first is not None:
            key = str(events[index][provider.key_field])
            reasons[index] = (
                f"{provider.key_field}: {clip(repr(key), 120)} is also the key of line {first}, a different"
                f" event; {provider.title} would keep only one of them"
            )
    return reasons


def _held_back(earlier: Known, provider: Provider) -> Known:
    """A line ``unknown`` long ago (even if a later re-send failed), kept ``unknown`` and not sent: a re-send
    could be billed twice."""
    assert earlier.unsure_since is not None
    return attrs.evolve(
        earlier,
        status="unknown",
        reason=past_window_reason(provider.title, earlier.unsure_since, PAST_WINDOW_REMEDY),
    )


def _identify_chunk(
    chunk: list[Record],
    provider: Provider,
    state: State | None,
    stamp: int | None,
    occurrences: Occurrences,
    keys: KeyRegistry,
    stale: float | None = None,
) -> list[Record]:
    readable = [record for record in chunk if record.event is not None]
    events = [record.event for record in readable if record.event is not None]
    digests = [content_digest(event) for event in events]
    conflicts = key_conflicts(events, digests, [record.line for record in readable], provider, keys)
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
        # Once unknown, the provider may have it from then on, whatever a later run's failed re-send said.
        if earlier is not None and past_window(earlier.unsure_since, stale):
            out.append(Record(record.line, event, None, line_print, _held_back(earlier, provider)))
            continue
        # Without a state there is no earlier stamp either: ``stamp`` None means no state.
        problem = stamp_problem(event, provider, stamps_kept=stamp is not None)
        if problem is not None:
            out.append(Record(record.line, None, problem))
            continue
        stamped = _needs_stamp(event, provider)
        if stamped and earlier is not None and earlier.stamp is not None:
            event[TIMESTAMP] = earlier.stamp
        elif stamped and stamp is not None:
            event[TIMESTAMP] = stamp
            new_stamps.append((line_print, stamp))
        give_key(
            event, provider.key_field, key_source(event, provider.key_field, content, stamped=stamped), number
        )
        # A line whose key an earlier line gave to another event is rejected, with its event for the letter.
        out.append(Record(record.line, event, conflicts.get(at), line_print))
    if state is not None and new_stamps:
        # Recorded before the chunk is sent: a run killed mid-send resends these with the same timestamp.
        state.remember_stamps(new_stamps)
    return out
