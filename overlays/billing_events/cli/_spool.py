"""``billing-events spool status DIR``: what a durable spool directory holds, file by file."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from ..spool import SpoolFileStatus, spool_status
from ._exit import EXIT_OK, EXIT_USAGE


def add_parser(commands: Any) -> None:
    """Add ``spool status`` to the top-level subcommands."""
    spool = commands.add_parser(
        "spool",
        help="inspect a durable spool directory (background(spool=...))",
        description="Inspect the directory a background sender spools its events to.",
    )
    actions = spool.add_subparsers(dest="spool_action", required=True, metavar="ACTION")
    status = actions.add_parser(
        "status",
        help="pending events, their bytes and the oldest one's age, per file",
        description="Show each spool file: its owner (live or dead), the events it still holds, their"
        " bytes and the age of the oldest. A dead owner's file is sent by the next sender on the"
        " directory. Files set aside as damaged are listed too.",
    )
    status.add_argument("directory", metavar="DIR", help="the spool directory")
    status.add_argument("--json", action="store_true", help="one JSON object per file, one per line")


def run(args: argparse.Namespace, out: Console, err: Console) -> int:
    directory = Path(args.directory)
    if not directory.is_dir():
        err.print(f"billing-events: error: {directory}: not a directory", markup=False, highlight=False)
        return EXIT_USAGE
    files = spool_status(directory)
    now = time.time()
    if args.json:
        for item in files:
            out.print(
                orjson.dumps(_as_dict(item, now)).decode(), markup=False, highlight=False, soft_wrap=True
            )
        return EXIT_OK
    if not files:
        out.print(f"{directory}: no spool files", markup=False, highlight=False)
        return EXIT_OK
    # One block per file: the names are long, and a table would wrap them on a narrow terminal.
    for item in files:
        oldest = _age(now - item.oldest) if item.oldest is not None else "-"
        settled = ", ".join(f"{status} {count:,}" for status, count in sorted(item.settled.items()))
        fields = [
            f"owner: {_owner(item)}",
            f"pending: {_number(item.pending)}",
            f"bytes: {_number(item.bytes)}",
            f"oldest: {oldest}",
        ]
        if settled:
            fields.append(f"settled: {settled}")
        if item.problem:
            fields.append(f"note: {item.problem}")
        if item.updated is not None:
            fields.append(f"(as of {_age(now - item.updated)} ago)")
        out.print(item.name, markup=False, highlight=False)
        out.print("  " + "  ".join(fields), markup=False, highlight=False)
    pending = sum(item.pending or 0 for item in files)
    dead = sum(1 for item in files if not item.live and item.pending)
    out.print(
        f"{pending:,} events pending in {plural(len(files), 'file')}; {dead} left by dead senders",
        markup=False,
        highlight=False,
    )
    return EXIT_OK


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _owner(item: SpoolFileStatus) -> str:
    if item.problem == "set aside as damaged":
        return "-"
    state = "unknown" if item.live is None else "live" if item.live else "dead"
    return f"{state} (pid {item.pid})" if item.pid is not None else state


def _number(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m {seconds % 60:.0f}s"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h {seconds % 3600 // 60:.0f}m"
    return f"{seconds // 86400:.0f}d {seconds % 86400 // 3600:.0f}h"


def _as_dict(item: SpoolFileStatus, now: float) -> dict[str, Any]:
    return {
        "file": item.name,
        "live": item.live,
        "pid": item.pid,
        "pending": item.pending,
        "bytes": item.bytes,
        "oldest_age_seconds": None if item.oldest is None else round(now - item.oldest, 3),
        "settled": item.settled,
        "problem": item.problem,
        "status_age_seconds": None if item.updated is None else round(now - item.updated, 3),
    }
