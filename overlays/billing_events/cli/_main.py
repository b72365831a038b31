"""``billing-events``: ingest event files into Togai or Lago, and replay dead letters."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn

import orjson
from rich.console import Console

from .. import AsyncLago, AsyncTogai, RetryPolicy, __version__
from ..errors import ConfigurationError, InvalidEventError
from . import _state, spool
from ._display import (
    COUNTED,
    ProgressDisplay,
    format_counts,
    plural,
    problems_table,
    rate_line,
    summary_table,
)
from ._input import (
    FORMATS,
    STDIN,
    InputError,
    InputFile,
    Record,
    open_input,
    read_csv,
    read_jsonl,
)
from ._providers import PROVIDERS, Provider, line_key
from ._run import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    RunResult,
    SenderFactory,
    assign_keys,
    pump_records,
    skip_settled,
)
from ._state import Checkpoint, StateError

DESCRIPTION = """\
Send usage events to Togai or Lago from a JSONL or CSV file, with batching,
retries, a progress bar, per-line outcomes and a resumable checkpoint.
"""

EPILOG = """\
exit codes:
  0    every event was delivered (or was already stored)
  1    some lines were invalid or rejected by the provider; the rest were delivered
  2    some events failed (retries exhausted) or have an unknown outcome: see the dead-letter file
  64   usage error: bad option, unreadable input or CSV header, missing or refused token,
       unusable state file (after a refused token the run stops unsettled: fix it and resume)
  130  interrupted by Ctrl-C (143 for SIGTERM): progress is saved, run the same command to resume
"""


class UsageError(Exception):
    """Raised for a problem with the command line or its files; exits with 64."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
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
        help="also write the final counts, exit code and problem lines as JSON to PATH",
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
        help="print a line on stderr each time the checkpoint moves (useful in logs, where there is no bar)",
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
        help="send the events of a JSONL or CSV file (or stdin)",
        description="Send the events of a JSONL or CSV file to a provider.",
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
            help="JSONL (one event object per line) or CSV file; '-' or nothing reads stdin",
        )
        sub.add_argument(
            "--format",
            choices=FORMATS,
            help="input format (default: from the file extension, .csv for CSV, otherwise JSONL)",
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
            help=f"checkpoint file (default: FILE.{provider.name}.state.json; none for stdin)",
        )
        resume.add_argument(
            "--restart",
            action="store_true",
            help="ignore an existing checkpoint and send the whole file again; events the provider already"
            " has are deduplicated by their keys",
        )
        _add_connection_options(sub, provider)
        _add_output_options(sub, dead_letter_default=f"FILE.{provider.name}.dead-letter.jsonl")
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
            choices=("rejected", "failed", "unknown"),
            metavar="STATUS",
            help="replay only entries with this status: rejected, failed or unknown (repeatable; default: all)",
        )
        sub.add_argument(
            "--dry-run",
            action="store_true",
            help="check every entry against the spec and report problems by line number; send nothing",
        )
        _add_connection_options(sub, provider)
        _add_output_options(sub, dead_letter_default="DEAD_LETTER_FILE with .remaining.jsonl")
        sub.set_defaults(provider_spec=provider, command="replay")
    spool.add_parser(commands)
    return parser


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
        f"Send the events of a JSONL or CSV file to {provider.title}.\n\n"
        f"JSONL: one {provider.title} event object per line, as in the API's request body.\n"
        f"{columns}\n\n"
        f"An event without '{provider.key_field}' gets a key derived from the file's content digest and\n"
        "its line number, so re-sending a line never bills it twice. Progress is checkpointed after\n"
        "every settled batch: after Ctrl-C, SIGTERM or a crash, run the same command to resume.\n\n"
        "Outcomes: 'invalid' lines could not be read (not JSON, not an object, wrong CSV row) and\n"
        "were not sent; 'rejected' events break a rule of the spec (checked before sending) or were\n"
        "refused by the provider; 'failed' and 'unknown' events ran out of retries. The last three\n"
        "go to the dead-letter file."
    )


# -- running ---------------------------------------------------------------------------------------


def _records(provider: Provider, source: InputFile) -> Iterator[Record]:
    if source.format == "csv":
        return read_csv(source.path, provider.csv_header_problems, provider.csv_row_to_event)
    return read_jsonl(source.path)


def _dead_letter_records(path: Path, provider: Provider, only: Sequence[str] | None) -> Iterator[Record]:
    """Records of a dead-letter file; entries filtered out by --only are skipped, others' are invalid."""
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc

    def entries() -> Iterator[Record]:
        with stream:
            for number, raw in enumerate(stream, start=1):
                if not raw.strip():
                    continue
                try:
                    entry = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    yield Record(number, None, f"not valid JSON: {exc}")
                    continue
                if not isinstance(entry, dict) or not isinstance(entry.get("event"), dict):
                    yield Record(number, None, "not a dead letter: expected an object with an 'event' object")
                    continue
                if entry.get("provider") not in (None, provider.name):
                    yield Record(
                        number, None, f"dead letter of {entry.get('provider')!r}, not {provider.name}"
                    )
                    continue
                if only and entry.get("status") not in only:
                    continue
                event: dict[str, object] = entry["event"]
                if event.get(provider.key_field) in (None, "") and isinstance(entry.get("key"), str):
                    event[provider.key_field] = entry["key"]
                yield Record(number, event)

    return entries()


def _open_sender(provider: Provider, args: argparse.Namespace, dead_letter: Path) -> SenderFactory:
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


def _check_batch_size(provider: Provider, args: argparse.Namespace) -> None:
    if args.batch_events > provider.batch_limit:
        raise UsageError(
            f"--batch-events: {provider.title} takes at most {provider.batch_limit} events per request,"
            f" got {args.batch_events}"
        )


def _dry_run(
    out: Console, records: Iterator[Record], provider: Provider, label: str, batch_events: int
) -> int:
    rules = provider.rules(batch_events)
    checked = 0
    invalid = 0
    first_line_of_key: dict[object, int] = {}
    for record in records:
        checked += 1
        problem = record.problem
        if record.event is not None:
            try:
                rules.prepare(record.event)
            except InvalidEventError as exc:
                problem = str(exc)
        if record.event is None or problem is not None:
            invalid += 1
            out.print(f"{label}:{record.line}: {problem}", markup=False, highlight=False)
            continue
        key = record.event.get(provider.key_field)
        if isinstance(key, str):
            scope = record.event.get(provider.key_scope) if provider.key_scope else None
            earlier = first_line_of_key.setdefault((key, scope), record.line)
            if earlier != record.line:
                invalid += 1
                out.print(
                    f"{label}:{record.line}: {provider.key_field}: {key!r} is also the key of line {earlier};"
                    f" {provider.title} would keep only one of them",
                    markup=False,
                    highlight=False,
                )
    verdict = "no problems" if not invalid else f"{invalid:,} with problems"
    out.print(
        f"dry run: checked {checked:,} events of {label} for {provider.title}: {verdict}; nothing was sent"
    )
    return EXIT_OK if not invalid else EXIT_REJECTED


def _write_report(path: Path, data: dict[str, Any]) -> None:
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))


def _print_outcome(
    out: Console,
    err: Console,
    *,
    provider: Provider,
    label: str,
    result: RunResult,
    dead_letter: Path,
    state_path: Path | None,
) -> None:
    checkpoint = result.checkpoint
    counts = checkpoint.counts
    records = checkpoint.records_done
    out.print(summary_table(f"{provider.title}: {label}", counts, records=records))
    if result.records_this_run or result.elapsed:
        out.print(rate_line(result.records_this_run, result.elapsed), markup=False, highlight=False)
    problem_total = sum(counts.get(name, 0) for name in COUNTED if name not in ("delivered", "duplicate"))
    if checkpoint.problems:
        out.print(problems_table(checkpoint.problems, problem_total))
    undelivered = sum(counts.get(name, 0) for name in ("rejected", "failed", "unknown"))
    if undelivered and dead_letter.exists():
        out.print(
            f"{plural(undelivered, 'event')} not delivered went to {dead_letter}; re-send with:\n"
            f"  billing-events replay {provider.name} {dead_letter}",
            markup=False,
            highlight=False,
        )
    if result.interrupted_by is not None or result.fatal is not None:
        why = "interrupted" if result.fatal is None else f"stopped: {result.fatal}"
        if state_path is not None:
            err.print(
                f"{why}; {records:,} records are settled and saved in {state_path}."
                f" Run the same command again to resume at line {checkpoint.next_line}.",
                markup=False,
                highlight=False,
            )
        else:
            err.print(f"{why}; {records:,} records are settled.", markup=False, highlight=False)


def _ingest(args: argparse.Namespace, out: Console, err: Console, stdin: IO[bytes] | None) -> int:
    provider: Provider = args.provider_spec
    _check_batch_size(provider, args)
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
            return _dry_run(out, keyed_records(), provider, source.label, args.batch_events)
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
        return _finish(args, provider, source.label, RunResult(checkpoint), dead_letter, state_path, out, err)
    resumed = checkpoint is not None
    if checkpoint is None:
        checkpoint = Checkpoint(provider=provider.name, input_sha256=sha256)
    # The CSV header is checked before the first send so a bad header sends nothing.
    records = skip_settled(keyed_records(), checkpoint.next_line)
    try:
        first = next(records, None)
    except InputError as exc:
        raise UsageError(str(exc)) from exc
    open_sender = _open_sender(provider, args, dead_letter)
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
    result = _pump(args, provider, source, checkpoint, first, records, open_sender, state_path, err)
    return _finish(args, provider, source.label, result, dead_letter, state_path, out, err)


def _pump(
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


def _finish(
    args: argparse.Namespace,
    provider: Provider,
    label: str,
    result: RunResult,
    dead_letter: Path,
    state_path: Path | None,
    out: Console,
    err: Console,
) -> int:
    _print_outcome(
        out,
        err,
        provider=provider,
        label=label,
        result=result,
        dead_letter=dead_letter,
        state_path=state_path,
    )
    code = result.exit_code
    if args.report is not None:
        checkpoint = result.checkpoint
        _write_report(
            args.report,
            {
                "provider": provider.name,
                "input": label,
                "records": checkpoint.records_done,
                "counts": {name: checkpoint.counts.get(name, 0) for name in COUNTED},
                "exit_code": code,
                "finished": checkpoint.finished,
                "next_line": checkpoint.next_line,
                "records_this_run": result.records_this_run,
                "elapsed_seconds": round(result.elapsed, 3),
                "interrupted": result.interrupted_by is not None,
                "fatal": result.fatal,
                "dead_letter": str(dead_letter) if dead_letter.exists() else None,
                "state": str(state_path) if state_path is not None else None,
                "problems": [problem.to_json() for problem in checkpoint.problems],
            },
        )
    return code


def _replay(args: argparse.Namespace, out: Console, err: Console) -> int:
    provider: Provider = args.provider_spec
    _check_batch_size(provider, args)
    path = Path(args.file)
    records = _dead_letter_records(path, provider, args.only)
    if args.dry_run:
        return _dry_run(out, records, provider, str(path), args.batch_events)
    dead_letter: Path = args.dead_letter or path.with_name(
        path.name.removesuffix(".jsonl") + ".remaining.jsonl"
    )
    if dead_letter.resolve() == path.resolve():
        raise UsageError("--dead-letter must not be the file being replayed")
    open_sender = _open_sender(provider, args, dead_letter)
    checkpoint = Checkpoint(provider=provider.name, input_sha256="")
    result = _pump(args, provider, None, checkpoint, None, records, open_sender, None, err)
    return _finish(args, provider, str(path), result, dead_letter, None, out, err)


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
    try:
        if args.command == "spool":
            return spool.run(args, out, err)
        _require_token(args)
        if args.command == "ingest":
            return _ingest(args, out, err, stdin)
        return _replay(args, out, err)
    except UsageError as exc:
        err.print(f"billing-events: error: {exc}", markup=False, highlight=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        err.print("interrupted", markup=False, highlight=False)
        return 130
