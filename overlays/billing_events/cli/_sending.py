"""Building the client and pumping records through it, shared by ``ingest`` and ``replay``."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

import httpx
from rich.console import Console

from .. import AsyncLago, AsyncTogai, RetryPolicy
from ..config import resolve_base_url
from ..errors import ConfigurationError
from ._display import ProgressDisplay, format_counts
from ._exit import UsageError
from ._input import Record
from ._providers import RATE_BUDGET_ENV, Provider
from ._run import RunResult, SenderFactory, pump_records
from ._state import State, Tally
from ._text import clip


def open_sender(
    provider: Provider,
    args: argparse.Namespace,
    dead_letter: Path,
    earlier_unknown: dict[str, str] | None = None,
) -> SenderFactory:
    """Build the async client now (so configuration errors are usage errors) and hand it out once.

    ``earlier_unknown``: a replay's letters left ``unknown`` before (``OutcomeSink.earlier_unknown``).
    """
    options: dict[str, Any] = {
        "base_url": args.base_url,
        "endpoint": args.endpoint,
        "timeout": args.timeout,
        "max_batch_events": args.batch_events,
        "dead_letter_path": dead_letter,
        "max_in_flight": args.max_in_flight,
        "retry": RetryPolicy(max_attempts=args.max_attempts, deadline=args.retry_deadline),
    }
    if args.max_requests_per_second is not None:
        pace = args.max_requests_per_second
        options["max_requests_per_second"] = None if pace == "none" else pace
    budget = args.rate_budget
    from_environment = budget is None and bool(os.environ.get(RATE_BUDGET_ENV, "").strip())
    if from_environment:
        budget = os.environ[RATE_BUDGET_ENV].strip()
    if budget:
        options["rate_budget"] = budget  # ingests running side by side share one budget
    try:
        client: AsyncTogai | AsyncLago = (
            AsyncTogai(args.token, **options)
            if provider.name == "togai"
            else AsyncLago(args.token, **options)
        )
    except ConfigurationError as exc:
        message = str(exc)
        if from_environment and message.startswith("rate_budget:"):
            # The user gave no --rate-budget: name where the value came from.
            message = (
                f"{RATE_BUDGET_ENV} (the default of --rate-budget): {message.removeprefix('rate_budget: ')}"
            )
        raise UsageError(clip(message)) from exc
    if earlier_unknown is not None:
        client.sink.earlier_unknown = earlier_unknown
    return lambda: client


def destination(provider: Provider, args: argparse.Namespace) -> str:
    """The server the events go to, as the state records it (without a query, which may hold secrets)."""
    name: Literal["togai", "lago"] = "togai" if provider.name == "togai" else "lago"
    url = httpx.URL(resolve_base_url(name, args.base_url, args.endpoint))
    return str(url.copy_with(query=None, fragment=None))


def check_batch_size(provider: Provider, args: argparse.Namespace) -> None:
    if args.batch_events > provider.batch_limit:
        raise UsageError(
            f"--batch-events: {provider.title} takes at most {provider.batch_limit} events per request,"
            f" got {args.batch_events}"
        )


def _same_file(one: Path, other: Path) -> bool:
    try:
        if one.exists() and not one.is_file():
            return False  # /dev/null and other devices take any number of roles
        return one.resolve() == other.resolve() or (one.exists() and other.exists() and one.samefile(other))
    except OSError:
        return False


def check_distinct(files: dict[str, Path | None]) -> None:
    """Refuse two roles for one file: a report or dead letters written over the input would lose events."""
    named = [(role, path) for role, path in files.items() if path is not None]
    for at, (role, path) in enumerate(named):
        for other_role, other in named[at + 1 :]:
            if _same_file(path, other):
                raise UsageError(
                    f"{role} and {other_role} are the same file ({path}); give each its own path"
                )


def check_dead_letter(path: Path) -> None:
    """Refuse a dead-letter path that cannot be appended to, before anything is sent."""
    check_writable(path, "dead-letter file", "--dead-letter")


def check_report(path: Path | None) -> None:
    """Refuse a ``--report`` path that cannot be written, before anything is sent."""
    if path is not None:
        check_writable(path, "report", "--report")


def check_writable(path: Path, what: str, option: str) -> None:
    existed = path.exists()
    try:
        with path.open("ab"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write {what} {path}: {exc.strerror or exc}; check {option}") from exc
    if not existed:
        path.unlink(missing_ok=True)


def _is_terminal(stream: IO[str]) -> bool:
    """Whether the bar would draw on a real terminal. Not rich's ``Console.is_terminal``: that says yes
    under ``FORCE_COLOR``, which CI sets for colours in its logs, where the bar's cursor codes are noise."""
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):  # a captured or closed stream has no usable descriptor
        return False


def pump(
    args: argparse.Namespace,
    provider: Provider,
    total: int | None,
    records: Iterator[Record],
    open_sender: SenderFactory,
    state: State | None,
    err: Console,
) -> RunResult:
    """Send the records with a progress display; ``total`` is the expected number of records, if known."""
    enabled = _is_terminal(err.file) if args.progress is None else bool(args.progress)
    display = ProgressDisplay(err, enabled=enabled, description=provider.title, total=total)

    def log_commit(tally: Tally) -> None:
        err.print(
            f"settled {tally.records:,} records ({format_counts(tally.counts)})",
            markup=False,
            highlight=False,
        )

    with display:
        result = asyncio.run(
            pump_records(
                records,
                Tally(),
                open_sender=open_sender,
                state=state,
                display=display,
                window=args.max_in_flight,
                chunk_records=args.batch_events,
                on_commit=log_commit if args.verbose else None,
                provider=provider.name,
                key_field=provider.key_field,
            )
        )
        if result.interrupted_by is None and result.fatal is None:
            display.finish()
    return result
