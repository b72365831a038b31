"""The command line's arguments: one parser, with a sub-command per command and provider (and `mock`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from .. import RetryPolicy, __version__
from ..text import shown
from . import _columnar
from ._exit import EXIT_USAGE
from ._input import FORMATS, STDIN
from ._mock import DESCRIPTION as MOCK_DESCRIPTION
from ._mock import add_arguments as add_mock_arguments
from ._providers import PROVIDERS, RATE_BUDGET_ENV, Provider
from ._spool import add_parser as add_spool_parser

DESCRIPTION = """\
Send usage events to Togai or Lago from a JSONL or CSV file, with batching,
retries, a progress bar, per-line outcomes and a state file that makes
re-running a command send only the lines not yet settled.
"""

EPILOG = """\
exit codes:
  0    every event was delivered (or was already stored)
  1    some lines were invalid or rejected by the provider; the rest were delivered
  2    some events failed (retries exhausted) or have an unknown outcome: see the dead-letter file
  64   usage error: bad option, unreadable input or CSV header, unwritable dead-letter or state
       path, a state file in use by another run, missing or refused token (after a refused token
       the run stops unsettled: fix it and run the same command again)
  130  interrupted by Ctrl-C (143 for SIGTERM): progress is saved, run the same command to resume
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {shown(text)}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {shown(text)}")
    return value


def _pace(text: str) -> float | str:
    if text.strip().lower() == "none":
        return "none"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of requests per second or none, got {shown(text)}"
        ) from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0, got {shown(text)}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {shown(text)}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {shown(text)}")
    return value


def _add_connection_options(parser: argparse.ArgumentParser, provider: Provider) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--token",
        metavar="TOKEN",
        help=f"API token, sent as a bearer token (default: ${provider.token_env}). Prefer the variable:"
        " a command-line token is visible to other users of the machine",
    )
    group.add_argument(
        "--base-url",
        metavar="URL",
        help=f"base URL of the API, e.g. a self-hosted server or a mock (default: ${provider.url_env},"
        f" else the --endpoint)",
    )
    group.add_argument(
        "--endpoint",
        choices=provider.endpoints,
        help=f"{provider.title} region or environment when no base URL is given (default: {provider.endpoints[0]})",
    )
    group.add_argument(
        "--timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="timeout of one HTTP request (default: %(default)s)",
    )
    group.add_argument(
        "--max-in-flight",
        type=_positive_int,
        default=8,
        metavar="N",
        help="batches sent concurrently (default: %(default)s)",
    )
    group.add_argument(
        "--max-requests-per-second",
        type=_pace,
        metavar="N",
        help=f"pace requests to N per second, or `none` (default: {provider.title}'s published limits;"
        " no pace with --base-url, since a self-hosted server has no limiter)",
    )
    group.add_argument(
        "--rate-budget",
        metavar="URL",
        help="share the pace with every other process given the same budget: sqlite:///PATH?key=NAME"
        " (one machine) or redis://HOST:6379/0?key=NAME (a fleet); needs a pace"
        f" (default: ${RATE_BUDGET_ENV}, else this run paces alone)",
    )
    group.add_argument(
        "--max-attempts",
        type=_positive_int,
        default=RetryPolicy().max_attempts,
        metavar="N",
        help="attempts per batch on 429, 5xx and network errors before its events count as failed"
        " (default: %(default)s)",
    )
    group.add_argument(
        "--retry-deadline",
        type=_positive_float,
        default=RetryPolicy().deadline,
        metavar="SECONDS",
        help="stop retrying a batch after this long (default: %(default)s)",
    )
    group.add_argument(
        "--batch-events",
        type=_positive_int,
        default=provider.batch_limit,
        metavar="N",
        help=f"events per request, at most {provider.batch_limit} (default: %(default)s)",
    )


def _add_output_options(parser: argparse.ArgumentParser, *, dead_letter_default: str) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--dead-letter",
        metavar="PATH",
        type=Path,
        help="append events that were not delivered (rejected, failed, unknown) to this JSONL file,"
        f" which `billing-events replay` re-sends (default: {dead_letter_default})",
    )
    group.add_argument(
        "--report",
        metavar="PATH",
        type=Path,
        help="also write the final counts, exit code and problem lines as JSON to PATH (with --dry-run:"
        " the lines checked and their problems)",
    )
    group.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show the live progress bar on stderr (default: only when stderr is a terminal)",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print a line on stderr with the counts so far each time settled lines are committed (ingest: to"
        " its state file); useful in logs, where there is no bar",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="billing-events",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    ingest = commands.add_parser(
        "ingest",
        help="send the events of a JSONL, CSV, Parquet or Arrow file (or stdin)",
        description="Send the events of a JSONL, CSV, Parquet or Arrow file to a provider.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ingest_providers = ingest.add_subparsers(
        dest="provider", required=True, metavar="PROVIDER", parser_class=_Parser
    )
    for provider in PROVIDERS.values():
        sub = ingest_providers.add_parser(
            provider.name,
            help=f"send to {provider.title}",
            description=_ingest_description(provider),
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument(
            "file",
            nargs="?",
            default=STDIN,
            metavar="FILE",
            help="JSONL (one event object per line), CSV, Parquet or Arrow IPC file; '-' or nothing reads stdin",
        )
        sub.add_argument(
            "--format",
            choices=FORMATS,
            help="input format (default: from the file extension: .csv, .parquet/.pq, .arrow/.arrows/.feather;"
            " otherwise JSONL). Parquet and Arrow need pyarrow: pip install 'billing-events[parquet]'",
        )
        sub.add_argument(
            "--dry-run",
            action="store_true",
            help="check every line against the spec and report problems by line number; send nothing",
        )
        resume = sub.add_argument_group("resuming")
        resume.add_argument(
            "--state",
            metavar="PATH",
            type=Path,
            help=f"state file: the lines settled so far and the timestamps given to Lago lines without one"
            f" (default: FILE.{provider.name}.state.sqlite; none for stdin). Keep it: without it, Lago lines"
            " without a timestamp would be sent again with a new one",
        )
        resume.add_argument(
            "--restart",
            action="store_true",
            help="send every line again, settled or not, with the keys and timestamps it had; the provider"
            " drops what it already has (Togai only within 45 days of the first send)",
        )
        resume.add_argument(
            "--resend-past-window",
            action="store_true",
            help="also send again lines that ended `unknown` longer ago than the provider's window for"
            " repeated keys (Togai: 45 days, less a day); by default they stay `unknown`, as Togai would"
            " bill them again if the first send was stored",
        )
        _add_connection_options(sub, provider)
        _add_output_options(
            sub,
            dead_letter_default=f"FILE.{provider.name}.dead-letter.jsonl; for stdin"
            f" billing-events.{provider.name}.dead-letter.jsonl",
        )
        sub.set_defaults(provider_spec=provider, command="ingest")

    replay = commands.add_parser(
        "replay",
        help="re-send the events of a dead-letter file",
        description="Re-send the events of a dead-letter file; their keys are kept, so replaying twice is safe.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay_providers = replay.add_subparsers(
        dest="provider", required=True, metavar="PROVIDER", parser_class=_Parser
    )
    for provider in PROVIDERS.values():
        sub = replay_providers.add_parser(
            provider.name,
            help=f"re-send to {provider.title}",
            description=f"Re-send the {provider.title} events of a dead-letter file written by `ingest` or a"
            " client's dead_letter_path. Every event keeps its key, so events the provider already"
            " stored are not counted twice.",
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("file", metavar="DEAD_LETTER_FILE", help="JSONL dead-letter file")
        sub.add_argument(
            "--only",
            action="append",
            # dropped: what a client's background queue refused when full, in its dead_letter_path.
            choices=("rejected", "failed", "unknown", "dropped"),
            metavar="STATUS",
            help="replay only entries with this status: rejected, failed, unknown or dropped"
            " (repeatable; default: all)",
        )
        sub.add_argument(
            "--dry-run",
            action="store_true",
            help="check every entry against the spec and report problems by line number; send nothing",
        )
        sub.add_argument(
            "--resend-past-window",
            action="store_true",
            help="also replay `unknown` entries older than the provider's window for repeated keys"
            " (Togai: 45 days, less a day); by default they are refused, as Togai would bill them again"
            " if the first send was stored",
        )
        _add_connection_options(sub, provider)
        _add_output_options(sub, dead_letter_default="DEAD_LETTER_FILE with .remaining.jsonl")
        sub.set_defaults(provider_spec=provider, command="replay")

    mock = commands.add_parser(
        "mock",
        help="serve the Togai and Lago mock locally (needs billing-events[mock])",
        description=MOCK_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_mock_arguments(mock)
    add_spool_parser(commands)
    return parser


def _timestamp_note(provider: Provider) -> str:
    if not provider.stamps_missing_timestamp:
        return ""
    return (
        "An event without 'timestamp' gets the time of the run that first sends it, recorded in the\n"
        "state file, so every later run sends it with the same timestamp.\n"
    )


def _ingest_description(provider: Provider) -> str:
    if provider.name == "togai":
        columns = (
            "CSV columns: schemaName, id, timestamp, accountId; attr.<name> holds an attribute's value and\n"
            "unit.<name> its unit; dim.<name> holds a dimension. Empty cells are left out."
        )
    else:
        columns = (
            "CSV columns: transaction_id, external_subscription_id, code, timestamp (Unix seconds),\n"
            "precise_total_amount_cents; prop.<name> holds a property (sent as a string). Empty cells\n"
            "are left out."
        )
    return (
        f"Send the events of a JSONL, CSV, Parquet or Arrow file to {provider.title}.\n\n"
        f"JSONL: one {provider.title} event object per line, as in the API's request body.\n"
        f"{columns}\n"
        f"Parquet and Arrow: the CSV columns with typed values, and the nested column(s)\n"
        f"{', '.join(_columnar.NESTED[provider.name])}; lines are numbered by row.\n\n"
        f"An event without '{provider.key_field}' gets a key derived from its own content and its occurrence\n"
        "among identical lines, so appending, re-sorting or re-running a file keeps every key.\n"
        f"{_timestamp_note(provider)}"
        "Each settled batch is recorded in the state file: running the same command again (after\n"
        "Ctrl-C, SIGTERM, a crash, or an edit of the file) sends only lines not yet settled, and\n"
        "again those that ended failed or unknown.\n\n"
        "Outcomes: 'invalid' lines could not be read (not JSON, not an object, wrong CSV row) and\n"
        "were not sent; 'rejected' events break a rule of the spec (checked before sending) or were\n"
        "refused by the provider; 'failed' and 'unknown' events ran out of retries. The last three\n"
        "go to the dead-letter file."
    )
