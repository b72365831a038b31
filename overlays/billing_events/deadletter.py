"""Dead letters: every event that was not delivered, with why, as JSON lines."""

from __future__ import annotations

import datetime as dt
import io
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import attrs
import orjson

from . import metrics
from ._logs import log_safely
from .errors import APIError
from .outcomes import Outcome, OutcomeStatus, past_window
from .providers.base import Pending, Settled, delivered_outcome
from .stats import StatsCounter
from .text import bounded_lines, shorten

log = logging.getLogger("billing_events.deadletter")
outcome_log = logging.getLogger("billing_events.outcomes")
# At most one warning about undelivered events per sink in this many seconds; the next one counts the rest.
WARNING_INTERVAL = 10.0

OutcomeCallback = Callable[[Outcome], None]
# A letter holds one event (one request carries at most 1 MiB) and a short reason: a longer line is damage.
MAX_LETTER_BYTES = 2 * 1024 * 1024
# An event too large for a letter (far beyond any request body, so refused) keeps this much of its JSON.
CLIPPED_EVENT_BYTES = 64 * 1024


@attrs.frozen
class DeadLetter:
    """One line of a dead-letter file."""

    provider: str
    key: str
    status: str
    reason: str | None
    event: dict[str, Any]
    at: str
    # Set when the event was too large to keep: ``event`` is empty, and this says how large it was.
    clipped: str | None = None
    # An ``unknown`` letter's first unknown moment (ISO 8601): ``at``, or an earlier send's when replayed.
    unsure_since: str | None = None
    # With ``clipped``: the first CLIPPED_EVENT_BYTES characters of the event's JSON, to find it by.
    event_head: str | None = None

    @property
    def unsure_from(self) -> str:
        """When the provider may have had the event from: the time the provider's window runs from."""
        return unsure_moment(self.unsure_since, self.at)


def unsure_moment(unsure_since: object, at: object) -> str:
    """A letter's first unknown moment: ``unsure_since``, else ``at``; "" when neither is text (a letter
    edited by hand may hold anything)."""
    for moment in (unsure_since, at):
        if isinstance(moment, str) and moment:
            return moment
    return ""


def letter_time() -> str:
    """Now, as letters write their times (ISO 8601, milliseconds, UTC)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _letter(provider: str, outcome: Outcome, now: str) -> bytes:
    """One dead-letter line; an event that would make it longer than a letter holds is kept clipped."""
    letter = {
        "provider": provider,
        "key": outcome.key,
        "status": outcome.status.value,
        "reason": outcome.reason,
        "event": outcome.event,
        "at": now,
    }
    if outcome.status is OutcomeStatus.UNKNOWN:
        # Kept across replays: the provider's window for repeated keys runs from the first unknown send.
        letter["unsure_since"] = outcome.unsure_since or now
    # A value JSON cannot carry is written as its repr: the letter is kept, readable.
    line = orjson.dumps(letter, default=repr, option=orjson.OPT_APPEND_NEWLINE)
    if len(line) <= MAX_LETTER_BYTES:
        return line
    # Such an event is beyond any provider's request body: it can only be refused. Its start is kept to
    # recognise it by, never a copy that a replay could send (a clipped value could be billed).
    event = orjson.dumps(outcome.event, default=repr)
    head = event[:CLIPPED_EVENT_BYTES].decode("utf-8", "replace")
    clipped = {
        **letter,
        "event": {},
        "clipped": f"the event's JSON was {len(event):,} bytes; its first {len(head):,} characters are event_head",
        "event_head": head,
    }
    return orjson.dumps(clipped, option=orjson.OPT_APPEND_NEWLINE)


class DeadLetterFile:
    """Appends dead letters to a JSONL file; safe across threads. The token is never written."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        # Letters that could not be written (a full disk, a lost permission), and the last reason.
        self.unwritten = 0
        self.last_error: str | None = None

    def reset_lock(self) -> None:
        self._lock = threading.Lock()

    def write(self, provider: str, outcomes: Sequence[Outcome]) -> None:
        now = letter_time()
        lines = b"".join(_letter(provider, outcome, now) for outcome in outcomes)
        with self._lock:
            try:
                with self.path.open("ab+") as sink:
                    # A line cut short before (a crash, a full disk) must not swallow the first letter here.
                    if sink.tell() > 0:
                        sink.seek(-1, io.SEEK_END)
                        if sink.read(1) != b"\n":
                            lines = b"\n" + lines
                    sink.write(lines)
            except OSError as exc:
                self.unwritten += len(outcomes)
                self.last_error = exc.strerror or type(exc).__name__
                raise

    def __repr__(self) -> str:
        return f"DeadLetterFile({str(self.path)!r})"


@attrs.frozen
class BadLine:
    """A line of a dead-letter file that is not a dead letter (e.g. a write cut short by a crash)."""

    path: str
    line: int
    why: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: not a dead letter ({self.why}); skipped"


BadLineCallback = Callable[[BadLine], None]


def unknown_since(status: object, written: object, cutoff: float | None) -> float | None:
    """When an ``unknown`` letter was written (Unix time), if that is past the window (``outcomes.past_window``).

    Its event may have been stored then, and the provider has forgotten the key since: a replay
    could bill it twice. None for any other letter, or one whose time cannot be read.
    """
    if status != "unknown" or not isinstance(written, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(written)
    except ValueError:
        return None
    if moment.tzinfo is None or not past_window(moment.timestamp(), cutoff):
        return None
    return moment.timestamp()


def _warn(bad: BadLine) -> None:
    log.warning("%s", bad, extra={"path": bad.path, "line": bad.line})


def letter_lines(source: IO[bytes], limit: int = MAX_LETTER_BYTES) -> Iterator[tuple[int, bytes | int]]:
    """``(number, line)`` for each line, or ``(number, size)`` for one too long to be a letter (a damaged
    file, something else written over it), skipped without being read into memory.

    A UTF-8 byte order mark at the start (an editor's, after letters were fixed by hand) is dropped.
    """
    for number, line in bounded_lines(source, limit):
        if number == 1 and isinstance(line, bytes) and line.startswith(_BOM):
            line = line[len(_BOM) :]
        yield number, line


_BOM = b"\xef\xbb\xbf"


def too_long(size: int) -> str:
    return f"line is {size:,} bytes, more than a dead letter holds ({MAX_LETTER_BYTES:,})"


def held_back_outcome(letter: DeadLetter, key: str, reason: str) -> Outcome:
    """The outcome a replay gives a letter it leaves out: its status as written (``unknown`` if unreadable,
    or if it says delivered: this replay did not deliver it, so ``report.ok`` must not count it)."""
    try:
        status = OutcomeStatus(letter.status)
    except ValueError:
        status = OutcomeStatus.UNKNOWN
    if status.delivered:
        status = OutcomeStatus.UNKNOWN
    return Outcome(key=key, status=status, event=letter.event, reason=reason, held_back=True)


def read_dead_letters(path: str | Path, on_bad_line: BadLineCallback | None = None) -> Iterator[DeadLetter]:
    """The dead letters of a file, in order.

    A line that is not a dead letter is skipped and passed to ``on_bad_line``
    (default: a WARNING naming the file, the line and why); the others are still read.
    """
    report = on_bad_line or _warn
    with Path(path).open("rb") as source:
        for number, line in letter_lines(source):
            if isinstance(line, int):
                report(BadLine(str(path), number, too_long(line)))
                continue
            if not line.strip():
                continue
            try:
                item = orjson.loads(line)
                letter = DeadLetter(
                    provider=item["provider"],
                    key=item["key"],
                    status=item["status"],
                    reason=item.get("reason"),
                    event=dict(item["event"]),
                    at=item.get("at", ""),
                    clipped=item.get("clipped"),
                    unsure_since=item["unsure_since"] if isinstance(item.get("unsure_since"), str) else None,
                    event_head=item["event_head"] if isinstance(item.get("event_head"), str) else None,
                )
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                why = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
                report(BadLine(str(path), number, shorten(why, 120)))
                continue
            yield letter


# Keys an OutcomeSink remembers as unknown since an earlier send (a small entry each).
MAX_EARLIER_UNKNOWN = 100_000


def remember_unknown(earlier: dict[str, str], key: str, since: str) -> None:
    """Keep ``key``'s earliest unknown moment in ``earlier`` (ISO 8601), forgetting the oldest key past the cap.

    A moment that cannot be read is taken as now: such a letter is never held back early.
    """
    if _moment(since) == float("inf"):
        since = letter_time()
    known = earlier.get(key)
    if known is not None and _moment(known) <= _moment(since):
        return
    earlier[key] = since
    while len(earlier) > MAX_EARLIER_UNKNOWN:
        del earlier[next(iter(earlier))]


def _moment(text: object) -> float:
    try:
        moment = dt.datetime.fromisoformat(text)  # type: ignore[arg-type]  # a letter edited by hand: anything
    except (ValueError, TypeError):
        return float("inf")  # an unreadable time never wins over a readable one
    if moment.tzinfo is None:
        return float("inf")
    return moment.timestamp()


_threads = threading.local()


def on_sender_thread() -> None:
    """Mark the calling thread as a background sender's own (see ``OutcomeSink._call``)."""
    _threads.sender = True


class OutcomeSink:
    """Where settled events go: the counters, the metrics, the logs, the dead-letter file and the callbacks."""

    def __init__(
        self,
        provider: str,
        stats: StatsCounter,
        dead_letter_file: DeadLetterFile | None,
        on_dead_letter: OutcomeCallback | None,
        on_outcome: OutcomeCallback | None = None,
    ) -> None:
        self.provider = provider
        self.stats = stats
        self.dead_letter_file = dead_letter_file
        self.on_dead_letter = on_dead_letter
        self.on_outcome = on_outcome
        self._warnings = _WarningThrottle()
        # A dead-letter file that cannot be written fails for every batch: one ERROR per interval.
        self._write_errors = _WarningThrottle()
        # Key -> when an earlier send left it unknown (ISO 8601), for the events replays send again. Kept
        # for the client's life (a re-send of a replay's report is the same event), the last
        # MAX_EARLIER_UNKNOWN keys at most.
        self.earlier_unknown: dict[str, str] = {}

    def remember_unknown(self, key: str, since: str) -> None:
        """A replay is about to send again an event an earlier send left ``unknown`` at ``since``."""
        remember_unknown(self.earlier_unknown, key, since)

    def with_earlier(self, settled: list[Settled]) -> list[Settled]:
        """``settled`` with what earlier sends say: an event a replay's send surely did not store is still
        ``unknown`` when an earlier send may have stored it, and keeps that send's moment.

        The client applies it before its report and ``record_settled`` see the outcomes (``_base``): the
        report says what the letters say. Background senders remember no such keys.
        """
        earlier = self.earlier_unknown
        if not earlier:
            return settled
        adjusted: list[Settled] = []
        for item in settled:
            since = earlier.get(item.pending.key)
            if since is not None and item.status is OutcomeStatus.FAILED:
                reason = f"{item.reason}; this send stored nothing, but one of {shorten(since, 40)} may have: it stays unknown"
                item = Settled(item.pending, OutcomeStatus.UNKNOWN, reason, item.error, since)
            elif since is not None and item.status is OutcomeStatus.UNKNOWN:
                item = Settled(item.pending, item.status, item.reason, item.error, since)
            adjusted.append(item)
        return adjusted

    def reset_lock(self) -> None:
        self._warnings = _WarningThrottle()
        self._write_errors = _WarningThrottle()

    def closing(self) -> None:
        """At close: what the throttles held back, if anything (no later line would come to say it): the
        undelivered events, and the dead letters that could not be written."""
        unwritten = self._write_errors.take_held_back()
        if unwritten and self.dead_letter_file is not None:
            log_safely(
                log.error,
                "could not write %d more dead letters to %s since the last such error",
                unwritten,
                self.dead_letter_file.path,
                extra={"provider": self.provider, "events": unwritten},
            )
        held_back = self._warnings.take_held_back()
        if held_back:
            log_safely(
                outcome_log.warning,
                "%s: %d more %s not delivered since the last warning; the DEBUG records and the stats have"
                " each of them%s",
                self.provider,
                held_back,
                "event" if held_back == 1 else "events",
                ", the dead letters too" if self.dead_letter_file is not None and not unwritten else "",
                extra={"provider": self.provider, "events": held_back},
            )

    def record(self, outcomes: Sequence[Outcome]) -> None:
        counts = Counter(outcome.status for outcome in outcomes)
        self.stats.settle(counts.elements())
        metrics.settled(self.provider, counts)
        self._dispatch(outcomes, [outcome for outcome in outcomes if not outcome.delivered])

    def record_settled(self, delivered: Sequence[Pending], settled: Sequence[Settled]) -> None:
        """Like ``record``, building outcomes only for the events somebody will look at."""
        counts = Counter(item.status for item in settled)
        if delivered:
            self.stats.add("delivered", len(delivered))
            counts[OutcomeStatus.DELIVERED] += len(delivered)
        if settled:
            self.stats.settle(item.status for item in settled)
        metrics.settled(self.provider, counts)
        dead = [item.outcome() for item in settled if not item.status.delivered]
        if self.on_outcome is not None:
            outcomes = [delivered_outcome(pending) for pending in delivered]
            outcomes += [item.outcome() for item in settled]
            self._dispatch(outcomes, dead)
        elif dead:
            self._dispatch([], dead)

    def _dispatch(self, outcomes: Sequence[Outcome], dead: Sequence[Outcome]) -> None:
        # Letters and callbacks before the log records: those run the application's handlers, and nothing
        # a handler does may come between an event and its dead letter or its callback.
        if dead and self.dead_letter_file is not None:
            try:
                self.dead_letter_file.write(self.provider, dead)
            except Exception as exc:
                # The outcome is counted and passed to the callbacks even when the file fails.
                held_back = self._write_errors.allow(len(dead))
                if held_back is not None:
                    log_safely(
                        log.error,
                        "could not write %d dead letters to %s: %s%s",
                        len(dead),
                        self.dead_letter_file.path,
                        shorten(f"{type(exc).__name__}: {exc}"),
                        f" [{held_back} more not written since the last such error]" if held_back else "",
                        extra={"provider": self.provider, "events": len(dead)},
                    )
        self._call(self.on_dead_letter, dead)
        self._call(self.on_outcome, outcomes)
        if dead:
            self._log_dead(dead)

    def _log_dead(self, dead: Sequence[Outcome]) -> None:
        """One DEBUG record per undelivered event; one WARNING per settle, at most one per interval."""
        if outcome_log.isEnabledFor(logging.DEBUG):
            for outcome in dead:
                log_safely(
                    outcome_log.debug,
                    "%s event %s %s after %d attempts: %s",
                    self.provider,
                    shorten(outcome.key, 120),
                    outcome.status.value,
                    outcome.attempts,
                    outcome.reason,
                    extra=fields(self.provider, outcome),
                )
        held_back = self._warnings.allow(len(dead))
        if held_back is None or not outcome_log.isEnabledFor(logging.WARNING):
            return
        counts = Counter(outcome.status.value for outcome in dead)
        first = dead[0]
        log_safely(
            outcome_log.warning,
            "%s: %d %s not delivered (%s); first: %s %s: %s%s",
            self.provider,
            len(dead),
            "event" if len(dead) == 1 else "events",
            ", ".join(f"{status} {amount}" for status, amount in sorted(counts.items())),
            shorten(first.key, 120),
            first.status.value,
            first.reason,
            f" [{held_back} more since the last warning]" if held_back else "",
            extra={**fields(self.provider, first), "events": len(dead), "counts": dict(counts)},
        )

    def _call(self, callback: OutcomeCallback | None, outcomes: Sequence[Outcome]) -> None:
        if callback is None:
            return
        for outcome in outcomes:
            try:
                callback(outcome)
            except Exception:
                # A broken callback must not stop delivery of the other events.
                log_safely(
                    outcome_log.exception,
                    "outcome callback failed for event %s",
                    shorten(outcome.key, 120),
                    extra=fields(self.provider, outcome),
                )
            except BaseException:
                if not getattr(_threads, "sender", False):
                    raise  # Ctrl-C or sys.exit() in a callback of the caller's own call: theirs to stop it
                # On a sender's thread, SystemExit would only end that thread, and with it the delivery
                # of every later event: it is logged as a broken callback is.
                log_safely(
                    outcome_log.exception,
                    "outcome callback raised on a sender's thread for event %s; delivery goes on",
                    shorten(outcome.key, 120),
                    extra=fields(self.provider, outcome),
                )


def fields(provider: str, outcome: Outcome) -> dict[str, object]:
    """The structured fields of a log record about one event (``extra=``)."""
    error = outcome.error
    return {
        "provider": provider,
        "key": shorten(outcome.key, 120),
        "status": outcome.status.value,
        "attempts": outcome.attempts,
        "request_id": error.request_id if isinstance(error, APIError) else None,
        "http_status": error.status if isinstance(error, APIError) else None,
    }


class _WarningThrottle:
    """Lets one warning through per interval; counts the events of the ones it holds back."""

    def __init__(self, interval: float = WARNING_INTERVAL) -> None:
        self._interval = interval
        self._lock = threading.Lock()
        self._next = 0.0
        self._held_back = 0

    def allow(self, events: int) -> int | None:
        """None: hold this warning back; else the number of events held back since the last one."""
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._held_back += events
                return None
            self._next = now + self._interval
            held_back, self._held_back = self._held_back, 0
            return held_back

    def take_held_back(self) -> int:
        """The events of the warnings held back since the last one let through; the count starts again."""
        with self._lock:
            held_back, self._held_back = self._held_back, 0
            return held_back
