"""``billing-events``: ingest event files into Togai or Lago, replay dead letters, serve the mock."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from typing import IO

from rich.console import Console

from ._args import build_parser
from ._exit import EXIT_USAGE, UsageError
from ._ingest import ingest
from ._mock import mock
from ._providers import Provider
from ._replay import replay
from ._spool import run as spool_status

log = logging.getLogger("billing_events.cli")


def _require_token(args: argparse.Namespace) -> None:
    provider: Provider = args.provider_spec
    if args.dry_run or args.token or os.environ.get(provider.token_env, "").strip():
        return
    raise UsageError(f"no {provider.title} API token: set {provider.token_env} or pass --token")


def main(argv: Sequence[str] | None = None, *, stdin: IO[bytes] | None = None) -> int:
    """Run the command line; returns the exit code (see ``billing-events --help``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    out, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)
    code = _run(args, out, err, stdin)
    provider: Provider | None = getattr(args, "provider_spec", None)  # `mock` and `spool` have none
    name = provider.name if provider is not None else "both"
    log.info(
        "%s %s ended with exit code %d",
        args.command,
        name,
        code,
        extra={"provider": name, "command": args.command, "exit_code": code},
    )
    return code


def _run(args: argparse.Namespace, out: Console, err: Console, stdin: IO[bytes] | None) -> int:
    try:
        if args.command == "mock":
            return mock(args, err)
        if args.command == "spool":
            return spool_status(args, out, err)
        _require_token(args)
        if args.command == "ingest":
            return ingest(args, out, err, stdin)
        return replay(args, out, err)
    except UsageError as exc:
        err.print(f"billing-events: error: {exc}", markup=False, highlight=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print("interrupted", markup=False, highlight=False)
        return 130
