"""Send one partition of a backfill: rows in, counts by outcome out; the same on any engine.

Who a row is does not depend on where it ran:

- **Key.** The row's key column when it has one (``key_column``, by default the
  provider's own: Togai ``id``, Lago ``transaction_id``). Otherwise
  ``be-<32 hex>-<n>``: a digest of the event (with its timestamp) and ``n``, its
  occurrence among rows whose keys are made from that digest (``_keys.key_source``),
  as the CLI derives keys (``billing_events._keys``). The adapters shuffle such rows
  into one partition first (unless ``key_column`` is named), so ``n`` counts the
  copies of the whole dataset.
  Never a partition id or a position: Spark may hand a retried task another
  partition id (SPARK-28650).
- **Timestamp.** The row's ``timestamp`` column, or the job's stamp: written to
  the checkpoint directory once, by ``Backfill.prepare()`` on the driver, and
  read by every attempt of every partition.
- **Checkpoint.** A partition is named by a digest of its rows (each row's JSON
  with sorted keys, hashed; the hashes sorted, so order does not count), so a
  re-run of the same rows, under any partition id, finds the outcomes its
  earlier attempts saved and sends only the rest. Rows that ended ``failed`` or
  ``unknown`` are sent again, under the same key and timestamp.

A partition is read twice: once for its name, which is cheap, then row by row
as its events go out, so the first requests leave after that first reading and
not after every row was turned into an event.

The rate budget is the client's (``client_options``, e.g. ``rate_budget=`` and
``max_requests_per_second=``): every worker's client draws from it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import itertools
import numbers
import re
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence, Set
from typing import Any, Literal, cast

import attrs
import orjson
from attrs import field, frozen

from .. import _constants as C
from .._keys import Digest, Occurrences, content_digest, fingerprint, give_key, key_source
from ..aio import AsyncLago, AsyncTogai
from ..cli._columnar import INT_RANGE, column_problems, row_to_event
from ..cli._lines import SETTLED_FOR_GOOD
from ..cli._text import clip
from ..config import resolve_base_url
from ..errors import ConfigurationError
from ..outcomes import STORED_STATUSES as STATUSES
from ..outcomes import past_window, past_window_reason, stale_before
from ..text import shown as text_shown
from ._checkpoint import LAYOUT, NAMED_ATTRIBUTES, WHOLE_FLOATS, PartitionCheckpoint, job_stamp, shown
from ._clients import freeze_heap_once, run_with_client, this_process

ProviderName = Literal["togai", "lago"]
KEY_FIELD = {"togai": "id", "lago": "transaction_id"}
BATCH_LIMIT = {"togai": C.TOGAI_MAX_BATCH_EVENTS, "lago": C.LAGO_MAX_BATCH_EVENTS}
COUNT_COLUMNS = ("rows", *STATUSES, "sent", "settled_earlier")
# "problem": the first reason a row of the partition was not delivered in this run, if any (clipped).
SUMMARY_COLUMNS = ("partition", *COUNT_COLUMNS, "problem")
# Groups of lanes that send chunks side by side (see _send).
LANE_GROUPS = 2
# Called after each checkpointed chunk with the partition's name and the chunks done so far.
ChunkHook = Callable[[str, int], None]


def _whole_seconds(value: object) -> int | None:
    """A job's own stamp as whole Unix seconds: an int, or a float with nothing after the point
    (``period_end.timestamp()``); anything else is refused, naming it."""
    if value is None or type(value) is int:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)  # numpy's integers
    raise ConfigurationError(f"stamp: must be whole Unix seconds (an int) or None, got {text_shown(value)}")


@frozen
class Backfill:
    """What every partition of one backfill shares; picklable, so engines ship it to their workers.

    ``client_options`` go to ``AsyncTogai``/``AsyncLago`` as they are (``token``,
    ``base_url``, ``rate_budget``, ``max_requests_per_second``, ``retry``, ...);
    they are left out of the repr, so a token never shows in a log.
    """

    provider: ProviderName = field(validator=attrs.validators.in_(("togai", "lago")))
    # A password in an fsspec URL (user:password@host) is masked in the repr.
    checkpoint: str = field(repr=lambda url: repr(shown(url)))
    key_column: str | None = None
    timestamp_column: str = "timestamp"
    client_options: Mapping[str, Any] = field(factory=dict, repr=False)
    storage_options: Mapping[str, Any] = field(factory=dict, repr=False)
    # Rows sent between two checkpoints; None: four rounds of max_in_flight full batches.
    chunk_events: int | None = field(
        default=None, validator=attrs.validators.optional(attrs.validators.ge(1))
    )
    max_in_flight: int = field(default=8, validator=attrs.validators.ge(1))
    stamp: int | None = field(default=None, converter=_whole_seconds)
    on_chunk: ChunkHook | None = field(default=None, repr=False)
    # Re-send rows that ended ``unknown`` longer ago than the provider's window for repeated keys
    # (Togai: 45 days, see ``stale_before``); by default they are held back, as they may be billed twice.
    resend_past_window: bool = False
    # Freeze the worker's heap once, before its first partition sends (see ``_clients.freeze_heap_once``).
    freeze_heap: bool = True
    # How the checkpoint directory names partitions (``_checkpoint.LAYOUT``); prepare() reads it.
    layout: int = field(default=LAYOUT, repr=False)
    # The process that called prepare(): it never freezes its heap, which is the caller's.
    driver: str | None = field(default=None, repr=False)

    @property
    def rows_per_chunk(self) -> int:
        if self.chunk_events is not None:
            return self.chunk_events
        return BATCH_LIMIT[self.provider] * self.max_in_flight * 4

    def prepare(self) -> Backfill:
        """This backfill with the job's stamp: read from the checkpoint directory, or written there now.

        Call it once on the driver before the partitions run (the adapters do).
        """
        # The server the rows go to: a directory settled against a sandbox must not skip production's rows.
        options = self.client_options
        server = resolve_base_url(self.provider, options.get("base_url"), options.get("endpoint"))
        stamp, layout = job_stamp(
            self.checkpoint, self.storage_options, self.provider, server, stamp=self.stamp
        )
        return attrs.evolve(self, stamp=stamp, layout=layout, driver=this_process())


def check_columns(backfill: Backfill, columns: Iterable[object]) -> None:
    """Refuse a frame whose columns the provider's layout does not know, before anything is sent.

    A column that maps to nothing (``prop_n`` for ``prop.n``) would be left out of every event
    without a word: a property the provider sums would bill nothing. The rules are the CLI's.
    """
    problems = columns_problems(backfill, columns)
    if problems:
        shown_ = "; ".join(clip(problem, 200) for problem in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ConfigurationError(
            f"backfill columns: {shown_}{more}; rename the columns or select the ones to send"
        )


def columns_problems(backfill: Backfill, columns: Iterable[object]) -> list[str]:
    """What ``check_columns`` refuses in ``columns``, each problem in words; empty when they are fine."""
    renamed = {backfill.timestamp_column: "timestamp"}
    if backfill.key_column is not None:
        renamed[backfill.key_column] = KEY_FIELD[backfill.provider]
    names = [renamed.get(str(column), str(column)) for column in columns]
    return column_problems(backfill.provider, names)


def empty_summary(name: str = "") -> dict[str, Any]:
    return {"partition": name} | dict.fromkeys(COUNT_COLUMNS, 0) | {"problem": ""}


@functools.cache
def _stamp_value(provider: str, stamp: int) -> object:
    if provider == "togai":
        return dt.datetime.fromtimestamp(stamp, dt.UTC).isoformat().replace("+00:00", "Z")
    return stamp


# Rows turned into events at a time: their copies are numbered in one call (``Occurrences.number``).
IDENTIFY_GROUP = 512


@attrs.define
class _Tally:
    """What reading a partition's rows found besides its events."""

    rows: int = 0
    invalid: int = 0
    problem: str = ""  # why the first invalid row has no event
    held: str = ""  # why the first row held back (past the window for repeated keys) was not sent


def _identify(
    rows: Iterable[Mapping[str, Any]], backfill: Backfill, tally: _Tally
) -> Generator[tuple[bytes, dict[str, object]]]:
    """Each row's fingerprint and event (keyed and stamped), a group of rows at a time.

    The events are made as the send takes them, so each dict lives for one request: a
    partition's dicts kept until its last chunk went were tens of thousands of objects that
    Python's collector moved into its oldest generation, and each such move brought nearer a
    full collection, which walks the worker's whole heap (pandas, the engine).
    """
    stamp = None if backfill.stamp is None else _stamp_value(backfill.provider, backfill.stamp)
    key_field = KEY_FIELD[backfill.provider]
    # From layout 4, a whole-number float counts as its integer in the digests (never in what is sent),
    # and an empty key as none.
    normalized = backfill.layout >= WHOLE_FLOATS
    digest = _digest_of(backfill)
    occurrences = Occurrences()
    try:
        for group in _batched(rows, IDENTIFY_GROUP):
            tally.rows += len(group)
            events: list[dict[str, object]] = []
            contents: list[bytes] = []
            sources: list[bytes] = []
            for row in group:
                try:
                    event, problem = _row_event(row, backfill)
                    if event is not None:
                        content = digest(event)
                except Exception as exc:  # a row of any type: what breaks on it is its own problem
                    event, problem = None, clip(f"rejected: row: {type(exc).__name__}: {exc}")
                if event is None:
                    tally.invalid += 1
                    tally.problem = tally.problem or problem
                else:
                    stamped = _stamp(event, stamp)
                    events.append(event)
                    contents.append(content)
                    sources.append(
                        key_source(
                            event,
                            key_field,
                            content,
                            stamped=stamped,
                            empty_is_none=normalized,
                            digest=digest,
                        )
                    )
            # Numbered by the digest the key is made from, so no two rows share a key; in the partition's
            # order: the counts carry over from one group to the next. The fingerprint keeps the digest
            # of the event as read (before stamping), under which earlier runs saved the row.
            numbers = occurrences.number(sources)
            for event, content, source, number in zip(events, contents, sources, numbers, strict=True):
                give_key(event, key_field, source, number)
                yield fingerprint(content, number), event
    finally:
        occurrences.close()


def _batched(rows: Iterable[Mapping[str, Any]], size: int) -> Iterator[list[Mapping[str, Any]]]:
    iterator = iter(rows)
    while group := list(itertools.islice(iterator, size)):
        yield group


def _row_event(row: Mapping[str, Any], backfill: Backfill) -> tuple[dict[str, object] | None, str]:
    """The row's event (its key column and timestamp column applied), or why it has none."""
    key_column = backfill.key_column
    renamed = backfill.timestamp_column != "timestamp"
    key_name = key_column if key_column is not None else KEY_FIELD[backfill.provider]
    plain = row
    mapping = type(row) is dict or isinstance(row, Mapping)  # most rows are dicts: no ABC check
    key = row.get(key_name) if mapping else None
    # pandas stores whole numbers with a null among them as floats: 5.0 is the key 5, as it is once the
    # null is gone, so a backfill fixed and run again keeps its keys. (numpy's floats too from layout 4:
    # a job begun before keeps the keys it sent.)
    whole = _as_int(key) if backfill.layout >= WHOLE_FLOATS else _plain_whole(key)
    if whole is not None:
        plain = {**row, key_name: whole}
    # A row that is not a mapping goes as it is: row_to_event says what is wrong with it.
    if (renamed or key_column is not None) and mapping:
        plain = dict(plain)  # a copy: a bag's rows are the caller's dicts
        if renamed:
            plain["timestamp"] = plain.pop(backfill.timestamp_column, None)
        if key_column is not None:
            key = plain.pop(key_column, None)
            if _no_key(key):
                # No shuffle ran for a named key column: a derived key could repeat in another partition.
                return None, f"rejected: {key_column}: empty; key_column names it, so every row needs a key"
            plain[KEY_FIELD[backfill.provider]] = str(key)
    event, problem = row_to_event(backfill.provider, plain)
    if event is None:
        return None, f"rejected: {problem}"
    return event, ""


def _as_int(value: object) -> int | None:
    """A whole-number float (numpy's too) as its integer; None for any other value."""
    kind = type(value)
    if kind is str or kind is int or value is None:
        return None  # the common values, without an ABC check
    if isinstance(value, float):
        number = value
    elif isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        number = float(value)  # numpy's float32, say: not a float subclass
    else:
        return None
    return int(number) if number.is_integer() else None


def _plain_whole(value: object) -> int | None:
    return int(value) if isinstance(value, float) and value.is_integer() else None


def _no_key(key: object) -> bool:
    """None, empty text, or the missing value of pandas or numpy (NaN, NaT, NA): as a key, its text would
    be shared by every such row."""
    if key is None or isinstance(key, str):
        return not key
    try:
        return bool(key != key)  # NaN and NaT are not equal to themselves
    except TypeError:
        return True  # pandas' NA has no truth value


def _stamp(event: dict[str, object], stamp: object) -> bool:
    """Give the event the job's stamp when it has no timestamp; whether it was given."""
    if event.get("timestamp") is not None:
        return False
    if stamp is None:
        raise _unprepared()
    event["timestamp"] = stamp
    return True


def placing_digest(event: dict[str, object], backfill: Backfill) -> bytes:
    """The digest by which the adapters place a row's event, so that the rows numbered together meet.

    Rows whose keys are made from one digest (``key_source``) share it: the event as read, without an
    empty key or a timestamp equal to the job's stamp (such an event is a copy of one given the stamp).
    A job begun before this layout places every event by the event as read, and keeps its partitions.
    """
    if backfill.layout >= WHOLE_FLOATS:
        key_field = KEY_FIELD[backfill.provider]
        stamp = None if backfill.stamp is None else _stamp_value(backfill.provider, backfill.stamp)
        at_stamp = stamp is not None and event.get("timestamp") == stamp
        if at_stamp or event.get(key_field) == "":
            event = {
                name: value
                for name, value in event.items()
                if not ((name == key_field and value == "") or (at_stamp and name == "timestamp"))
            }
    return _digest_of(backfill)(event)


def _digest_of(backfill: Backfill) -> Digest:
    """How the job hashes an event: from layout 4 with whole-number floats as integers (``event_digest``),
    from layout 5 with a Togai event's attributes in the order of their names (``named_digest``)."""
    if backfill.layout >= NAMED_ATTRIBUTES:
        return named_digest
    return event_digest if backfill.layout >= WHOLE_FLOATS else content_digest


def named_digest(event: dict[str, object]) -> bytes:
    """``event_digest`` with a Togai event's attributes in the order of their names, as Togai reads them:
    the order of a frame's ``attr.*`` columns is not part of the event. (Lago's properties are a map,
    which every digest hashes with sorted keys.)"""
    attributes = event.get("attributes")
    if isinstance(attributes, list) and len(attributes) > 1:
        names = [_attribute_name(attribute) for attribute in attributes]
        if names != sorted(names):
            ordered = sorted(attributes, key=_attribute_name)  # stable: one name twice keeps its order
            event = {**event, "attributes": ordered}
    return event_digest(event)


def _attribute_name(attribute: object) -> str:
    name = attribute.get("name") if isinstance(attribute, dict) else None
    return name if isinstance(name, str) else ""


# A Togai attribute's value written from a whole-number float ("1000.0"): the same quantity as "1000".
_WHOLE_TEXT = re.compile(r"-?[0-9]+\.0+")


def _whole(value: object) -> object:
    """``value`` with every whole-number float in it as its integer (up to 64 bits); strings as they are."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and INT_RANGE.start <= value < INT_RANGE.stop else value
    if isinstance(value, dict):
        return {name: _whole(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_whole(item) for item in value]
    return value


def _whole_text(value: object) -> object:
    """A number's text written from a whole-number float ("1000.0", "-0.0") as the integer's ("1000", "0")."""
    if isinstance(value, str) and _WHOLE_TEXT.fullmatch(value):
        return str(int(value[: value.index(".")]))
    return value


def _whole_attribute(attribute: object) -> object:
    """A Togai attribute whose value (a numeric string) was written from a whole-number float, as the
    integer's text: Togai bills "1000.0" and "1000" alike."""
    if isinstance(attribute, dict) and "value" in attribute:
        return {**attribute, "value": _whole_text(attribute["value"])}
    return attribute


def event_digest(event: dict[str, object]) -> bytes:
    """The digest of a job of layout 4: a whole-number float counts as its integer, and so does a Togai
    attribute's value or a Lago amount written from one (pandas reads a column of integers with a null
    among them as floats; once the null is fixed the rows read as integers and must keep their keys).
    The event itself, as sent, is not changed."""
    data = orjson.dumps(event, option=orjson.OPT_SORT_KEYS)
    if b".0" not in data and b"e+" not in data:
        # No whole-number float in it (orjson writes one as "5.0", or "1e+16" from 1e16), nor a Togai
        # value written from one: the event's own digest, without a walk through it.
        return hashlib.sha256(data).digest()
    whole = cast(dict[str, object], _whole(event))
    attributes = whole.get("attributes")
    if isinstance(attributes, list):  # a Togai event
        whole["attributes"] = [_whole_attribute(attribute) for attribute in attributes]
    if "precise_total_amount_cents" in whole:  # a Lago event: its amount is written as text, a decimal
        whole["precise_total_amount_cents"] = _whole_text(whole["precise_total_amount_cents"])
    return content_digest(whole)


def _unprepared() -> ValueError:
    return ValueError("Backfill.prepare() was not called: rows without a timestamp need its stamp")


_ROW_JSON = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class Rereadable:
    """Rows that give all of themselves each time they are read (``send_partition`` reads them twice)."""

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        raise NotImplementedError


# Values whose text is the same in every process (no address, no hash order).
_TEXT_KEPT = (numbers.Number, dt.date, dt.time, dt.timedelta)


def _plain_value(value: object) -> object:
    """A value orjson does not write, as something it does, the same in every process and run."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Set):
        # A set's own order follows the process's string hashes: its items go in the order of their JSON.
        return sorted(value, key=_row_json)
    if isinstance(value, bytes | bytearray):
        return value.hex()
    kind = type(value)
    if isinstance(value, _TEXT_KEPT):
        # A Decimal, a pandas Timestamp: text that is the same everywhere.
        return f"{kind.__qualname__}:{value}"
    # Any other text may hold an address or a set in hash order; such a value has no JSON form, and its
    # row is rejected: its type is enough.
    return kind.__qualname__


def _portable(value: object) -> object:
    """``value`` with its integers beyond 64 bits as text, which orjson cannot write as numbers."""
    if isinstance(value, int) and not INT_RANGE.start <= value < INT_RANGE.stop:
        return f"int:{value}"
    if isinstance(value, Mapping):
        return {name: _portable(item) for name, item in value.items()}
    if isinstance(value, Set):
        return sorted(map(_portable, value), key=_row_json)
    if isinstance(value, list | tuple):
        return [_portable(item) for item in value]
    return value


def _row_json(value: object) -> bytes:
    return orjson.dumps(value, default=_plain_value, option=_ROW_JSON)


def row_digest(row: object) -> bytes:
    """16 bytes that a row and its copies share, in any process: its JSON with sorted keys, hashed."""
    try:
        data = _row_json(row)
    except TypeError:  # orjson's error: an integer beyond 64 bits, nested too deep
        try:
            data = _row_json(_portable(row))
        except Exception:
            # Nested deeper than orjson goes, or broken as it is read: such rows share one digest.
            data = b"a row that cannot be written"
    return hashlib.blake2b(data, digest_size=16).digest()


def partition_name(digests: Iterable[bytes]) -> str:
    """A digest of the partition's rows (``row_digest``), whatever their order."""
    digest = hashlib.sha256()
    for row in sorted(digests):
        digest.update(row)
    return digest.hexdigest()[:32]


def _name_and_size(rows: Iterable[Mapping[str, Any]], backfill: Backfill) -> tuple[str, int]:
    """The partition's name and its number of rows; refuses a row that needs the stamp when there is none."""
    digests = [row_digest(row) for row in rows]
    if backfill.stamp is None:
        column = backfill.timestamp_column
        if any(_needs_stamp(row, column) for row in rows):
            raise _unprepared()  # before anything is sent
    if backfill.layout == 1:
        # A job begun before partitions were named by their rows: its checkpoints go by its events.
        tally = _Tally()
        return partition_name(print_ for print_, _ in _identify(rows, backfill, tally)), len(digests)
    return partition_name(digests), len(digests)


def _needs_stamp(row: object, column: str) -> bool:
    try:
        return isinstance(row, Mapping) and row.get(column) is None
    except Exception:  # a row that breaks as it is read is rejected, stamp or not
        return False


def send_partition(rows: Iterable[Mapping[str, Any]], backfill: Backfill) -> dict[str, Any]:
    """Send the rows not yet settled; the partition's counts by outcome, as one summary row.

    Rows that cannot become an event (a column of the wrong type) count as
    ``rejected``; so do events the spec check or the provider refuses. ``rows``
    is read twice: a sequence (a list, say) as it is, any other iterable is
    first made into a list.
    """
    # Only a sequence, or rows that say they can be read again, are read twice as they are: any other
    # iterable (an iterator, a reader over a stream) might give its rows once.
    source = rows if isinstance(rows, Sequence | Rereadable) else list(rows)
    name, size = _name_and_size(source, backfill)
    summary = empty_summary(name)
    checkpoint = PartitionCheckpoint(backfill.checkpoint, backfill.storage_options, name)
    known = checkpoint.load()
    tally = _Tally()
    identified = _identify(source, backfill, tally)
    pending = _unsettled(identified, known, checkpoint, backfill, summary, tally)
    try:
        first = next(pending, None)
        if first is not None:
            # About how many rows go out: rows already settled for good do not.
            expected = size - sum(status in SETTLED_FOR_GOOD for status in known.values())
            options = {"max_in_flight": backfill.max_in_flight, **backfill.client_options}
            if backfill.freeze_heap and backfill.driver not in (None, this_process()):
                freeze_heap_once()  # a worker's heap, not the caller's
            run_with_client(
                backfill.provider,
                options,
                lambda client: _send(
                    client, itertools.chain((first,), pending), expected, backfill, checkpoint, summary
                ),
            )
    finally:
        pending.close()
        identified.close()
    if tally.rows != size:
        # Rows changed under the partition between its two readings: its name no longer stands for them.
        raise RuntimeError(
            f"the partition's rows changed while it was sent: {size} rows named it, {tally.rows} were read"
        )
    summary["rows"] = tally.rows
    summary["rejected"] += tally.invalid
    summary["problem"] = tally.problem or tally.held or summary["problem"]
    return summary


def _unsettled(
    identified: Iterator[tuple[bytes, dict[str, object]]],
    known: Mapping[bytes, str],
    checkpoint: PartitionCheckpoint,
    backfill: Backfill,
    summary: dict[str, Any],
    tally: _Tally,
) -> Generator[tuple[bytes, dict[str, object]]]:
    """The rows still to send; the others are counted in the summary as their earlier outcome."""
    cutoff = None if backfill.resend_past_window else stale_before(backfill.provider)
    for print_, event in identified:
        earlier = known.get(print_)
        if earlier in SETTLED_FOR_GOOD:
            summary[earlier] += 1
            summary["settled_earlier"] += 1
        elif (since := checkpoint.unsure_since.get(print_)) is not None and past_window(since, cutoff):
            # The provider has forgotten its key by now: if that send was stored, a re-send bills twice.
            summary["unknown"] += 1
            tally.held = tally.held or past_window_reason(
                backfill.provider, since, "Backfill(resend_past_window=True) sends it"
            )
        else:
            yield print_, event


async def _send(
    client: AsyncTogai | AsyncLago,
    pending: Iterator[tuple[bytes, dict[str, object]]],
    expected: int,
    backfill: Backfill,
    checkpoint: PartitionCheckpoint,
    summary: dict[str, Any],
) -> None:
    """Send the pending rows chunk by chunk, from ``LANE_GROUPS`` groups of lanes that take turns.

    A ``send()`` ends by waiting for its slowest request, its other lanes idle.
    Two groups, each with half of ``max_in_flight`` lanes and a chunk of its own,
    keep one group sending while the other finishes; never more than
    ``max_in_flight`` requests are open. A chunk's outcomes are saved as soon as
    its ``send()`` returns, so a kill resends at most one chunk per group.
    ``expected`` (about how many rows go out) says how many groups have a chunk.
    """
    size = backfill.rows_per_chunk
    groups = max(1, min(LANE_GROUPS, backfill.max_in_flight, -(-expected // size)))
    lanes = [
        backfill.max_in_flight // groups + (index < backfill.max_in_flight % groups)
        for index in range(groups)
    ]
    done = 0

    async def group(in_flight: int) -> None:
        nonlocal done
        # One iterator shared by the groups: each row is taken once, as a lane needs its next batch.
        while (head := next(pending, None)) is not None:
            prints: list[bytes] = []
            report = await client.send(_chunk(head, pending, size, prints), max_in_flight=in_flight)
            # Statuses only: an Outcome is built for a problem alone.
            statuses = [status.value for status in report.statuses]
            if not summary["problem"]:
                summary["problem"] = next(
                    (
                        clip(f"{status.value}: {report[index].reason or report[index].error or ''}")
                        for index, status in enumerate(report.statuses)
                        if not status.delivered
                    ),
                    "",
                )
            outcomes = list(zip(prints, statuses, strict=True))
            # In a thread: an object store's write must not hold up the other group's answers.
            await asyncio.to_thread(checkpoint.save, outcomes)
            for status in statuses:
                summary[status] += 1
            summary["sent"] += len(prints)
            done += 1
            if backfill.on_chunk is not None:
                backfill.on_chunk(summary["partition"], done)

    try:
        async with asyncio.TaskGroup() as running:
            for in_flight in lanes:
                running.create_task(group(in_flight))
    except BaseExceptionGroup as errors:
        # One group's error (a failed checkpoint write, say) is the error of the partition.
        if len(errors.exceptions) == 1:
            raise errors.exceptions[0] from None
        raise


def _chunk(
    head: tuple[bytes, dict[str, object]],
    pending: Iterator[tuple[bytes, dict[str, object]]],
    size: int,
    prints: list[bytes],
) -> Iterator[dict[str, object]]:
    """``head`` and the next rows up to ``size``, each event as the send takes it; its fingerprint into ``prints``."""
    for print_, event in itertools.chain((head,), itertools.islice(pending, size - 1)):
        prints.append(print_)
        yield event


def total(summaries: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """The overall counts of a backfill's partition summaries."""
    counts = dict.fromkeys(("partitions", *COUNT_COLUMNS), 0)
    for summary in summaries:
        counts["partitions"] += 1
        for column in COUNT_COLUMNS:
            counts[column] += int(summary[column])
    return counts
