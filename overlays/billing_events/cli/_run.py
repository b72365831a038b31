"""Sending a stream of records through the async client, chunk by chunk, with a checkpoint.

Chunks of up to one provider batch are sent concurrently (``max_in_flight`` at
a time). A chunk settles when the client has an outcome for each of its events;
the checkpoint then moves past every chunk that settled in input order, so a
restart re-sends at most the chunks that were in flight, and their keys make
the provider drop what it already had.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol

from attrs import define, frozen

from ..errors import AuthError
from ..outcomes import Outcome, Report
from . import _state
from ._display import ProgressDisplay
from ._input import Record
from ._state import Checkpoint, Problem

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_FAILED = 2
EXIT_USAGE = 64


class CredentialsRefused(Exception):
    """The provider refused the token: every further request would fail the same way."""


class EventSender(Protocol):
    async def send(self, events: Iterable[Mapping[str, Any]]) -> Report: ...


SenderFactory = Callable[[], AbstractAsyncContextManager[EventSender]]


def exit_code_for(counts: Mapping[str, int]) -> int:
    """0 when everything was delivered, 2 when anything failed or is unknown, else 1 for rejections."""
    if counts.get("failed", 0) or counts.get("unknown", 0):
        return EXIT_FAILED
    if counts.get("rejected", 0) or counts.get("invalid", 0):
        return EXIT_REJECTED
    return EXIT_OK


@frozen
class SettledChunk:
    """Outcome counts and problem lines of one chunk, ready to be committed to the checkpoint."""

    seq: int
    next_line: int
    records: int
    counts: Counter[str]
    problems: list[Problem]


@define
class RunResult:
    checkpoint: Checkpoint
    records_this_run: int = 0
    elapsed: float = 0.0
    interrupted_by: int | None = None
    fatal: str | None = None
    fatal_is_usage: bool = False

    @property
    def exit_code(self) -> int:
        if self.interrupted_by is not None:
            return 128 + self.interrupted_by
        if self.fatal is not None:
            return EXIT_USAGE if self.fatal_is_usage else EXIT_FAILED
        return exit_code_for(self.checkpoint.counts)


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
    return Problem(line, outcome.status.value, outcome.reason or outcome.status.value, outcome.key)


class Pump:
    """Moves records from the input to the sender and settles them into the checkpoint."""

    def __init__(
        self,
        sender: EventSender,
        checkpoint: Checkpoint,
        *,
        state_path: Path | None,
        display: ProgressDisplay,
        window: int,
        chunk_records: int,
        on_commit: Callable[[Checkpoint], None] | None = None,
    ) -> None:
        self._sender = sender
        self._on_commit = on_commit
        self._checkpoint = checkpoint
        self._state_path = state_path
        self._display = display
        self._window = window
        self._chunk_records = chunk_records
        self._waiting: dict[int, SettledChunk] = {}
        self._next_commit = 0
        self.records_settled = 0
        self.seen = Counter(checkpoint.counts)

    async def run(self, records: Iterator[Record]) -> None:
        in_flight: set[asyncio.Task[SettledChunk]] = set()
        try:
            for seq, chunk in enumerate(_chunks(records, self._chunk_records)):
                while len(in_flight) >= self._window:
                    in_flight = await self._settle_some(in_flight)
                in_flight.add(asyncio.create_task(self._send(seq, chunk)))
            while in_flight:
                in_flight = await self._settle_some(in_flight)
        finally:
            for task in in_flight:
                task.cancel()
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

    async def _settle_some(
        self, in_flight: set[asyncio.Task[SettledChunk]]
    ) -> set[asyncio.Task[SettledChunk]]:
        done, pending = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            self._settled(task.result())
        return pending

    async def _send(self, seq: int, chunk: list[Record]) -> SettledChunk:
        counts: Counter[str] = Counter()
        problems: list[Problem] = []
        events: list[dict[str, object]] = []
        lines: list[int] = []
        for record in chunk:
            if record.event is None:
                counts["invalid"] += 1
                problems.append(Problem(record.line, "invalid", record.problem or "invalid"))
            else:
                events.append(record.event)
                lines.append(record.line)
        if events:
            report = await self._sender.send(events)
            refused = next((o.error for o in report.outcomes if isinstance(o.error, AuthError)), None)
            if refused is not None:
                # Not settled: the chunk stays before the checkpoint and is sent again on the next run.
                raise CredentialsRefused(str(refused))
            for outcome, line in zip(report.outcomes, lines, strict=True):
                counts[outcome.status.value] += 1
                if not outcome.delivered:
                    problems.append(_problem_for(outcome, line))
        return SettledChunk(seq, chunk[-1].line + 1, len(chunk), counts, problems)

    def _settled(self, chunk: SettledChunk) -> None:
        self.records_settled += chunk.records
        self.seen.update(chunk.counts)
        # A sender without stats (a stand-in) shows no pace.
        self._display.advance(chunk.records, self.seen, getattr(self._sender, "stats", None))
        self._waiting[chunk.seq] = chunk
        committed = False
        while self._next_commit in self._waiting:
            ready = self._waiting.pop(self._next_commit)
            self._next_commit += 1
            self._commit(ready)
            committed = True
        if not committed:
            return
        if self._state_path is not None:
            _state.save(self._state_path, self._checkpoint)
        if self._on_commit is not None:
            self._on_commit(self._checkpoint)

    def _commit(self, chunk: SettledChunk) -> None:
        checkpoint = self._checkpoint
        checkpoint.next_line = chunk.next_line
        checkpoint.records_done += chunk.records
        for name, count in chunk.counts.items():
            checkpoint.counts[name] = checkpoint.counts.get(name, 0) + count
        for problem in chunk.problems:
            checkpoint.add_problem(problem)


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def pump_records(
    records: Iterator[Record],
    checkpoint: Checkpoint,
    *,
    open_sender: SenderFactory,
    state_path: Path | None,
    display: ProgressDisplay,
    window: int,
    chunk_records: int,
    on_commit: Callable[[Checkpoint], None] | None = None,
) -> RunResult:
    """Send every record, stopping cleanly (checkpoint intact) on SIGINT or SIGTERM."""
    result = RunResult(checkpoint)
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
                checkpoint,
                state_path=state_path,
                display=display,
                window=window,
                chunk_records=chunk_records,
                on_commit=on_commit,
            )
            await pump.run(records)
        checkpoint.finished = True
        if state_path is not None:
            _state.save(state_path, checkpoint)
    except asyncio.CancelledError:
        if result.interrupted_by is None:
            raise
        if main_task is not None:
            main_task.uncancel()
    except CredentialsRefused as exc:
        result.fatal = f"the provider refused the token ({exc}); check --token or the token variable"
        result.fatal_is_usage = True
    except Exception as exc:
        # The client raised instead of reporting outcomes; what settled before stays checkpointed.
        result.fatal = f"{type(exc).__name__}: {exc}"
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        result.elapsed = time.monotonic() - started
        if pump is not None:
            result.records_this_run = pump.records_settled
    return result


def skip_settled(records: Iterable[Record], next_line: int) -> Iterator[Record]:
    """The records a resumed run still has to send."""
    return (record for record in records if record.line >= next_line)


def assign_keys(
    records: Iterable[Record], *, key_field: str, key_for_line: Callable[[int], str] | None
) -> Iterator[Record]:
    """Give each event without a key its deterministic one; events that have a key keep it."""
    for record in records:
        event = record.event
        if event is not None and key_for_line is not None and event.get(key_field) in (None, ""):
            event[key_field] = key_for_line(record.line)
        yield record
