"""``billing-events ingest``: send the events of a JSONL, CSV, Parquet or Arrow file, resumably."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from rich.console import Console

from ..outcomes import stale_before
from . import _sending
from ._dry_run import dry_run
from ._exit import EXIT_USAGE, UsageError
from ._input import (
    COLUMNAR,
    STDIN,
    InputError,
    InputFile,
    Record,
    open_input,
    read_columnar,
    read_csv,
    read_jsonl,
)
from ._lines import identify
from ._providers import Provider
from ._run import SenderFactory
from ._state import State, StateError
from ._summary import finish, write_report_or_say
from ._text import clip

# The timestamp given to Lago events without one: the run's start, recorded per line in the state.
clock = time.time


def _records(provider: Provider, source: InputFile) -> Iterator[Record]:
    if source.format in COLUMNAR:
        return read_columnar(source.path, source.format, provider.name)
    if source.format == "csv":
        return read_csv(
            source.path, provider.csv_header_problems, provider.csv_row_to_event, provider.max_batch_bytes
        )
    return read_jsonl(source.path, provider.max_batch_bytes)


class _UntilUnreadable:
    """The records up to the point where the input cannot be read further (a damaged Parquet page, an
    Arrow stream cut short): they end there, so the rows before are sent, and ``error`` says why."""

    def __init__(self, records: Iterator[Record]) -> None:
        self._records = records
        self.error: InputError | None = None

    def __iter__(self) -> Iterator[Record]:
        try:
            yield from self._records
        except InputError as exc:
            self.error = exc


def _dead_letter_path(args: argparse.Namespace, provider: Provider) -> Path:
    if args.dead_letter is not None:
        path: Path = args.dead_letter
        return path
    if args.file == STDIN:
        return Path(f"billing-events.{provider.name}.dead-letter.jsonl")
    return Path(f"{args.file}.{provider.name}.dead-letter.jsonl")


def ingest(args: argparse.Namespace, out: Console, err: Console, stdin: IO[bytes] | None) -> int:
    provider: Provider = args.provider_spec
    _sending.check_batch_size(provider, args)
    # The client first: a missing token or a bad option is said before standard input is read, which
    # may never end (a live stream).
    open_sender = (
        None if args.dry_run else _sending.open_sender(provider, args, _dead_letter_path(args, provider))
    )
    try:
        source = open_input(args.file, args.format, stdin=stdin)
    except InputError as exc:
        raise UsageError(str(exc)) from exc
    try:
        return _ingest_input(args, provider, source, open_sender, out, err)
    finally:
        source.discard()


def _keeps_state(args: argparse.Namespace, source: InputFile) -> bool:
    """Whether the run has a state file: stdin has none unless ``--state`` is given."""
    return args.state is not None or not source.spooled


def _state_path(args: argparse.Namespace, provider: Provider, source: InputFile) -> Path | None:
    if args.state is not None:
        path: Path = args.state
        return path
    if not _keeps_state(args, source):
        return None
    legacy = Path(f"{source.path}.{provider.name}.state.json")
    if legacy.exists():
        # Its keys derived from the whole file's digest: lines it settled would get new keys now.
        raise UsageError(
            f"{legacy} was written by billing-events 0.1, whose keys differ from this version's: the lines"
            " it sent would be sent again under new keys and billed twice. Nothing was sent. If that"
            " ingestion finished, there is nothing left to do for this file; put lines added since in a"
            " file of their own"
        )
    return Path(f"{source.path}.{provider.name}.state.sqlite")


def _ingest_input(
    args: argparse.Namespace,
    provider: Provider,
    source: InputFile,
    open_sender: SenderFactory | None,
    out: Console,
    err: Console,
) -> int:
    records = _records(provider, source)
    try:
        # The CSV header is read here, so a bad header stops the run before anything else happens.
        first = next(records, None)
    except InputError as exc:
        raise UsageError(str(exc)) from exc
    everything = itertools.chain([first] if first is not None else [], records)
    if open_sender is None:  # --dry-run
        _sending.check_distinct({"FILE": None if source.spooled else source.path, "--report": args.report})
        _sending.check_report(args.report)
        try:
            return dry_run(
                out,
                err,
                everything,
                provider,
                source.label,
                batch_events=args.batch_events,
                stamps_kept=_keeps_state(args, source),
                report=args.report,
            )
        except InputError as exc:  # the file is damaged past its start
            if args.report is not None:  # as the run's: an earlier report must not stand for this one
                write_report_or_say(
                    err,
                    args.report,
                    {
                        "provider": provider.name,
                        "input": source.label,
                        "dry_run": True,
                        "exit_code": EXIT_USAGE,
                        "fatal": clip(str(exc)),
                    },
                )
            raise UsageError(str(exc)) from exc

    state_path = _state_path(args, provider, source)
    dead_letter = _dead_letter_path(args, provider)
    _sending.check_distinct(
        {
            "FILE": None if source.spooled else source.path,
            "--state": state_path,
            "--dead-letter": dead_letter,
            "--report": args.report,
        }
    )
    _sending.check_dead_letter(dead_letter)
    _sending.check_report(args.report)
    try:
        state = (
            State.open(
                state_path,
                provider=provider.name,
                destination=_sending.destination(provider, args),
                restart=args.restart,
            )
            if state_path is not None
            else None
        )
    except StateError as exc:
        raise UsageError(str(exc)) from exc
    try:
        if state is not None and args.restart:
            state.forget_outcomes()
        readable = _UntilUnreadable(everything)
        identified = identify(
            iter(readable),
            provider=provider,
            state=state,
            stamp=int(clock()) if state is not None else None,
            # Lines are identified in blocks of several batches: one state commit per block.
            chunk_records=max(args.batch_events, 2000),
            stale=None if args.restart or args.resend_past_window else stale_before(provider.name),
        )
        with contextlib.closing(identified):
            result = _sending.pump(args, provider, source.records, identified, open_sender, state, err)
    finally:
        if state is not None:
            state.close()
    if readable.error is not None and result.fatal is None and result.interrupted_by is None:
        # Every row read before the damage was sent and settled; the rest of the file cannot be read.
        result.tally.finished = False
        result.fatal = f"{readable.error}; the rows before it were sent, the rest needs a readable copy"
        result.fatal_is_usage = True
    if result.tally.finished and result.records_this_run == 0 and result.tally.earlier:
        out.print(
            f"nothing to send: every line of {source.label} was settled by an earlier run ({state_path})",
            markup=False,
            highlight=False,
        )
    return finish(args, provider, source.label, result, dead_letter, state_path, out, err)
