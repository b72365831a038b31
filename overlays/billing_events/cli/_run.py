"""Sending a stream of records through the async client, chunk by chunk, recording outcomes in the state.

Chunks of up to one provider batch are sent concurrently (``max_in_flight`` at
a time). A chunk settles when the client has an outcome for each of its events,
and its lines are then recorded as settled, so a re-run re-sends at most the
chunks that were in flight, with the same keys and timestamps, and the provider
drops what it already had.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from attrs import define, frozen

from ..deadletter import DeadLetterFile
from ..errors import AuthError
from ..outcomes import Outcome, OutcomeStatus, Report, partial_report
from ._display import ProgressDisplay
from ._exit import EXIT_FAILED, EXIT_USAGE, exit_code_for
from ._input import Record
from ._state import Problem, Settled, State, Tally
from ._text import clip


class CredentialsRefused(Exception):
    """The provider refused the token: every further request would fail the same way."""


class EventSender(Protocol):
    async def send(self, events: Iterable[Mapping[str, Any]]) -> Report: ...


SenderFactory = Callable[[], AbstractAsyncContextManager[EventSender]]


@frozen
class SettledChunk:
    """One chunk's outcomes: per record in input order, and the lines to record as settled."""

    outcomes: list[tuple[str, Problem | None, bool]]
    settled: list[Settled]
    sent: int


@define
class RunResult:
    tally: Tally
    records_this_run: int = 0
    elapsed: float = 0.0
    interrupted_by: int | None = None
    fatal: str | None = None
    fatal_is_usage: bool = False
    # Dead letters that could not be written, and why.
    letters_unwritten: int = 0
    letters_error: str | None = None

    @property
    def exit_code(self) -> int:
        if self.interrupted_by is not None:
            return 128 + self.interrupted_by
        if self.fatal is not None:
            return EXIT_USAGE if self.fatal_is_usage else EXIT_FAILED
        return exit_code_for(self.tally.counts)


def _chunks(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    for record in records:
        chunk.append(record)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _problem_for(outcome: Outcome, line: int) -> Problem:
    key = clip(outcome.key) if outcome.key is not None else None
    return Problem(line, outcome.status.value, clip(outcome.reason or outcome.status.value), key)


def _earlier_problem(record: Record, status: str) -> Problem | None:
    if status in ("delivered", "duplicate") or record.earlier is None:
        return None
    reason = record.earlier.reason or "settled by an earlier run (its reason is in the dead-letter file)"
    return Problem(record.line, status, reason, record.earlier.key)


def letters_unwritten(sender: object) -> tuple[int, str | None]:
    """How many dead letters the sender could not write, and why; (0, None) when all were written."""
    letters = getattr(sender, "dead_letter_file", None)  # a stand-in sender may have none
    return (letters.unwritten, letters.last_error) if letters is not None and letters.unwritten else (0, None)


def _account(
    report: Report,
    sent: list[Record],
    outcomes: list[tuple[str, Problem | None, bool]],
    settled: list[Settled],
) -> BaseException | None:
    """Add the outcomes of ``sent`` from its report; the token refusal among them, if any."""
    # Outcomes are built for the events not delivered only: the rest need their status alone.
    troubled = {index: report[index] for index, found in enumerate(report.statuses) if not found.delivered}
    for index, (found, record) in enumerate(zip(report.statuses, sent, strict=True)):
        status = found.value
        outcome = troubled.get(index)
        sent_problem = None if outcome is None else _problem_for(outcome, record.line)
        outcomes.append((status, sent_problem, False))
        if record.fingerprint is not None:
            reason, key = (sent_problem.reason, sent_problem.key) if sent_problem else (None, None)
            settled.append(Settled(record.fingerprint, status, reason, key))
    return next((o.error for o in troubled.values() if isinstance(o.error, AuthError)), None)


class Pump:
    """Moves records from the input to the sender and records their outcomes."""

    def __init__(
        self,
        sender: EventSender,
        tally: Tally,
        *,
        state: State | None,
        display: ProgressDisplay,
        window: int,
        chunk_records: int,
        on_commit: Callable[[Tally], None] | None = None,
        provider: str = "",
        key_field: str = "",
    ) -> None:
        self._sender = sender
        self._provider = provider
        self._key_field = key_field
        self._on_commit = on_commit
        self._tally = tally
        self._state = state
        self._display = display
        self._window = window
        self._chunk_records = chunk_records
        self.records_sent = 0
        # The chunks a stop cut short or a refused token ended, with the outcomes the client gave their events.
        self._cut_short: list[SettledChunk] = []

    async def run(self, records: Iterator[Record]) -> None:
        in_flight: set[asyncio.Task[SettledChunk]] = set()
        try:
            for chunk in _chunks(records, self._chunk_records):
                while len(in_flight) >= self._window:
                    in_flight = await self._settle_some(in_flight)
                in_flight.add(asyncio.create_task(self._send(chunk)))
            while in_flight:
                in_flight = await self._settle_some(in_flight)
        finally:
            for task in in_flight:
                task.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)
            # Chunks are cut short only while a stop or a crash propagates: that is the error to report,
            # and a state that cannot take these outcomes too only makes the next run send them again.
            for cut_short in self._cut_short:
                with contextlib.suppress(Exception):
                    self._settled(cut_short)
            self._cut_short.clear()

    async def _settle_some(
        self, in_flight: set[asyncio.Task[SettledChunk]]
    ) -> set[asyncio.Task[SettledChunk]]:
        due = self._state.commit_due() if self._state is not None else None
        done, pending = await asyncio.wait(in_flight, timeout=due, return_when=asyncio.FIRST_COMPLETED)
        if not done:
            # The chunks in flight are slow (retries): what settled before them is committed on time.
            self._flush()
            done, pending = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        # Every chunk that finished is counted before one's error (a refused token) stops the run.
        for task in done:
            if task.exception() is None:
                self._settled(task.result())
        for task in done:
            task.result()  # raises a failed chunk's error
        return pending

    async def _send(self, chunk: list[Record]) -> SettledChunk:
        outcomes: list[tuple[str, Problem | None, bool]] = []
        settled: list[Settled] = []
        to_send: list[Record] = []
        local_rejects: list[Outcome] = []
        for record in chunk:
            if record.event is None:
                problem = Problem(record.line, "invalid", clip(record.problem or "invalid"))
                outcomes.append(("invalid", problem, False))
            elif record.earlier is not None and record.earlier.status is not None:
                status = record.earlier.status
                outcomes.append((status, _earlier_problem(record, status), True))
            elif record.problem is not None:
                local_rejects.append(self._refuse(record, outcomes, settled))
            else:
                to_send.append(record)
        if local_rejects:
            self._dead_letter(local_rejects, settled)
        if to_send:
            try:
                report = await self._sender.send(
                    [record.event for record in to_send if record.event is not None]
                )
            except BaseException as exc:
                # Stopped in flight (Ctrl-C, SIGTERM, another chunk's crash): the client still gave each
                # event an outcome (unknown when in flight, failed when never sent); count them now.
                cut_short = partial_report(exc)
                if cut_short is not None:
                    _account(cut_short, to_send[: len(cut_short)], outcomes, settled)
                    self._cut_short.append(SettledChunk(outcomes, settled, len(cut_short)))
                raise
            refused = _account(report, to_send, outcomes, settled)
            if refused is not None:
                # Counted (its dead letters are written) but not settled, but for the lines rejected before
                # the provider was asked (their letters stand): the next run sends the rest again.
                # (Unless a dead letter could not be written: then they stay for a re-run to write it.)
                letters_lost = letters_unwritten(self._sender)[0]
                rejected = [] if letters_lost else [line for line in settled if line.status == "rejected"]
                self._cut_short.append(SettledChunk(outcomes, rejected, len(to_send)))
                raise CredentialsRefused(clip(str(refused)))
            if letters_unwritten(self._sender)[0]:
                # A rejected line's dead letter may be lost: leave it unsettled, so a re-run writes it.
                settled = [line for line in settled if line.status != "rejected"]
        return SettledChunk(outcomes, settled, len(to_send))

    def _refuse(
        self, record: Record, outcomes: list[tuple[str, Problem | None, bool]], settled: list[Settled]
    ) -> Outcome:
        """A line the CLI rejects without sending (its key belongs to an earlier line's event)."""
        assert record.event is not None and record.problem is not None
        key = str(record.event.get(self._key_field, ""))
        reason = clip(record.problem)
        outcomes.append(("rejected", Problem(record.line, "rejected", reason, clip(key)), False))
        if record.fingerprint is not None:
            settled.append(Settled(record.fingerprint, "rejected", reason, clip(key)))
        return Outcome(key=key, status=OutcomeStatus.REJECTED, event=record.event, reason=record.problem)

    def _dead_letter(self, refused: list[Outcome], settled: list[Settled]) -> None:
        letters: DeadLetterFile | None = getattr(self._sender, "dead_letter_file", None)
        if letters is None:
            return
        try:
            letters.write(self._provider, refused)
        except OSError:
            # Counted in letters.unwritten: the summary says so, and the lines stay unsettled.
            settled[:] = [line for line in settled if line.status != "rejected"]

    def _flush(self) -> None:
        if self._state is not None and self._state.flush() and self._on_commit is not None:
            self._on_commit(self._tally)

    def _settled(self, chunk: SettledChunk) -> None:
        # Counted first: the outcomes stand (the dead letters hold them) even if the state cannot take them.
        for status, problem, earlier in chunk.outcomes:
            self._tally.add(status, problem, earlier=earlier)
        self.records_sent += chunk.sent
        # A sender without stats (a stand-in) shows no pace.
        self._display.advance(len(chunk.outcomes), self._tally.counts, getattr(self._sender, "stats", None))
        committed = self._state is None or (bool(chunk.settled) and self._state.settle(chunk.settled))
        if self._on_commit is not None and chunk.sent and committed:
            self._on_commit(self._tally)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def pump_records(
    records: Iterator[Record],
    tally: Tally,
    *,
    open_sender: SenderFactory,
    state: State | None,
    display: ProgressDisplay,
    window: int,
    chunk_records: int,
    on_commit: Callable[[Tally], None] | None = None,
    provider: str = "",
    key_field: str = "",
) -> RunResult:
    """Send every record, stopping cleanly (what settled stays recorded) on SIGINT or SIGTERM."""
    result = RunResult(tally)
    started = time.monotonic()
    main_task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []

    def stop(signum: signal.Signals) -> None:
        if result.interrupted_by is None and main_task is not None:
            result.interrupted_by = int(signum)
            main_task.cancel()

    for signum in _STOP_SIGNALS:
        # Only the main thread can own signal handlers; elsewhere Ctrl-C stays Python's default.
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(signum, stop, signum)
            installed.append(signum)
    pump: Pump | None = None
    try:
        async with open_sender() as sender:
            pump = Pump(
                sender,
                tally,
                state=state,
                display=display,
                window=window,
                chunk_records=chunk_records,
                on_commit=on_commit,
                provider=provider,
                key_field=key_field,
            )
            try:
                await pump.run(records)
            finally:
                result.letters_unwritten, result.letters_error = letters_unwritten(sender)
        tally.finished = True
    except asyncio.CancelledError:
        if result.interrupted_by is None:
            raise
        if main_task is not None:
            main_task.uncancel()
    except CredentialsRefused as exc:
        result.fatal = f"the provider refused the token ({exc}); check --token or the token variable"
        result.fatal_is_usage = True
    except Exception as exc:
        # The client raised instead of reporting outcomes; what settled before stays recorded.
        result.fatal = clip(f"{type(exc).__name__}: {exc}")
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        result.elapsed = time.monotonic() - started
        if pump is not None:
            result.records_this_run = pump.records_sent
    return result
