"""Building the client and pumping records through it, shared by ``ingest`` and ``replay``."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from .. import AsyncLago, AsyncTogai, RetryPolicy
from ..errors import ConfigurationError
from ._display import ProgressDisplay, format_counts
from ._exit import UsageError
from ._input import InputFile, Record
from ._providers import Provider
from ._run import RunResult, SenderFactory, pump_records
from ._state import Checkpoint


def open_sender(provider: Provider, args: argparse.Namespace, dead_letter: Path) -> SenderFactory:
    """Build the async client now (so configuration errors are usage errors) and hand it out once."""
    options: dict[str, Any] = {
        "base_url": args.base_url,
        "endpoint": args.endpoint,
        "timeout": args.timeout,
        "max_batch_events": args.batch_events,
        "dead_letter_path": dead_letter,
        "max_in_flight": args.max_in_flight,
        "retry": RetryPolicy(max_attempts=args.max_attempts, deadline=args.retry_deadline),
    }
    try:
        client: AsyncTogai | AsyncLago = (
            AsyncTogai(args.token, **options)
            if provider.name == "togai"
            else AsyncLago(args.token, **options)
        )
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from exc
    return lambda: client


def check_batch_size(provider: Provider, args: argparse.Namespace) -> None:
    if args.batch_events > provider.batch_limit:
        raise UsageError(
            f"--batch-events: {provider.title} takes at most {provider.batch_limit} events per request,"
            f" got {args.batch_events}"
        )


def pump(
    args: argparse.Namespace,
    provider: Provider,
    source: InputFile | None,
    checkpoint: Checkpoint,
    first: Record | None,
    records: Iterator[Record],
    open_sender: SenderFactory,
    state_path: Path | None,
    err: Console,
) -> RunResult:
    def everything() -> Iterator[Record]:
        if first is not None:
            yield first
        yield from records

    total = None
    if source is not None:
        header_lines = 1 if source.format == "csv" else 0
        total = max(source.line_count - header_lines, checkpoint.records_done)
    enabled = err.is_terminal if args.progress is None else bool(args.progress)
    display = ProgressDisplay(err, enabled=enabled, description=provider.title, total=total)

    def log_commit(moved: Checkpoint) -> None:
        err.print(
            f"settled {moved.records_done:,} records ({format_counts(moved.counts)}); next line {moved.next_line}",
            markup=False,
            highlight=False,
        )

    with display:
        display.start_at(checkpoint.records_done, checkpoint.counts)
        result = asyncio.run(
            pump_records(
                everything(),
                checkpoint,
                open_sender=open_sender,
                state_path=state_path,
                display=display,
                window=args.max_in_flight,
                chunk_records=args.batch_events,
                on_commit=log_commit if args.verbose else None,
            )
        )
        if result.interrupted_by is None and result.fatal is None:
            display.finish()
    return result
