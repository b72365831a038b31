"""``billing-events ingest``: send the events of a JSONL or CSV file, resumably."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from rich.console import Console

from . import _sending, _state
from ._display import format_counts
from ._dry_run import dry_run
from ._exit import UsageError
from ._input import InputError, InputFile, Record, open_input, read_csv, read_jsonl
from ._providers import Provider, line_key
from ._run import RunResult, assign_keys, skip_settled
from ._state import Checkpoint, StateError
from ._summary import finish


def _records(provider: Provider, source: InputFile) -> Iterator[Record]:
    if source.format == "csv":
        return read_csv(source.path, provider.csv_header_problems, provider.csv_row_to_event)
    return read_jsonl(source.path)


def ingest(args: argparse.Namespace, out: Console, err: Console, stdin: IO[bytes] | None) -> int:
    provider: Provider = args.provider_spec
    _sending.check_batch_size(provider, args)
    try:
        source = open_input(args.file, args.format, stdin=stdin)
    except InputError as exc:
        raise UsageError(str(exc)) from exc
    try:
        return _ingest_input(args, provider, source, out, err)
    finally:
        source.discard()


def _ingest_input(
    args: argparse.Namespace, provider: Provider, source: InputFile, out: Console, err: Console
) -> int:
    sha256 = source.sha256

    def keyed_records() -> Iterator[Record]:
        return assign_keys(
            _records(provider, source),
            key_field=provider.key_field,
            key_for_line=lambda line: line_key(sha256, line),
        )

    if args.dry_run:
        try:
            return dry_run(out, keyed_records(), provider, source.label, args.batch_events)
        except InputError as exc:
            raise UsageError(str(exc)) from exc

    state_path: Path | None = args.state
    if state_path is None and not source.spooled:
        state_path = Path(f"{source.path}.{provider.name}.state.json")
    dead_letter: Path = args.dead_letter or (
        Path(f"{source.path}.{provider.name}.dead-letter.jsonl")
        if not source.spooled
        else Path(f"billing-events.{provider.name}.dead-letter.jsonl")
    )
    checkpoint: Checkpoint | None = None
    if state_path is not None and not args.restart:
        try:
            checkpoint = _state.load(state_path, provider=provider.name, input_sha256=sha256)
        except StateError as exc:
            raise UsageError(str(exc)) from exc
    if checkpoint is not None and checkpoint.finished:
        out.print(
            f"nothing to do: {state_path} says {source.label} was fully sent to {provider.title}."
            " Pass --restart to send it again (events the provider already has are deduplicated), or"
            f" `billing-events replay {provider.name}` to re-send dead letters.",
            markup=False,
            highlight=False,
        )
        return finish(args, provider, source.label, RunResult(checkpoint), dead_letter, state_path, out, err)
    resumed = checkpoint is not None
    if checkpoint is None:
        checkpoint = Checkpoint(provider=provider.name, input_sha256=sha256)
    # The CSV header is checked before the first send so a bad header sends nothing.
    records = skip_settled(keyed_records(), checkpoint.next_line)
    try:
        first = next(records, None)
    except InputError as exc:
        raise UsageError(str(exc)) from exc
    open_sender = _sending.open_sender(provider, args, dead_letter)
    if state_path is not None and not resumed:
        # Writing the empty checkpoint now turns an unwritable state path into a usage error, before any send.
        try:
            _state.save(state_path, checkpoint)
        except OSError as exc:
            raise UsageError(
                f"cannot write state file {state_path}: {exc.strerror or exc}; pass --state"
            ) from exc
    if resumed:
        err.print(
            f"resuming {source.label} at line {checkpoint.next_line}: {checkpoint.records_done:,} records were"
            f" settled by an earlier run ({format_counts(checkpoint.counts)})",
            markup=False,
            highlight=False,
        )
    result = _sending.pump(args, provider, source, checkpoint, first, records, open_sender, state_path, err)
    return finish(args, provider, source.label, result, dead_letter, state_path, out, err)
