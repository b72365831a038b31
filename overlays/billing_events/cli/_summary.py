"""The end of a run: the summary on stdout, the resume hint on stderr, the ``--report`` file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from ._display import COUNTED, plural, problems_table, rate_line, summary_table
from ._providers import Provider
from ._run import RunResult


def write_report(path: Path, data: dict[str, Any]) -> None:
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))


def write_report_or_say(err: Console, path: Path, data: dict[str, Any]) -> None:
    # Checked before the run; a disk that filled since must not hide the run's outcome and exit code.
    try:
        write_report(path, data)
    except OSError as exc:
        err.print(f"could not write the report {path}: {exc.strerror or exc}", markup=False, highlight=False)


def print_outcome(
    out: Console,
    err: Console,
    *,
    provider: Provider,
    label: str,
    result: RunResult,
    dead_letter: Path,
    state_path: Path | None,
    rerun: str | None = None,
) -> None:
    """``rerun``: the command that starts the run over, for a run without a state file (a replay): one
    that stops leaves what it never read in its input only, so the remaining file alone would miss it."""
    tally = result.tally
    counts = tally.counts
    records = tally.records
    out.print(summary_table(f"{provider.title}: {label}", counts, records=records))
    if result.records_this_run or result.elapsed:
        out.print(rate_line(result.records_this_run, result.elapsed), markup=False, highlight=False)
    if tally.earlier:
        out.print(
            f"{plural(tally.earlier, 'line')} settled by an earlier run (counted above) were not sent again",
            markup=False,
            highlight=False,
        )
    problem_total = sum(counts.get(name, 0) for name in COUNTED if name not in ("delivered", "duplicate"))
    if tally.problems:
        out.print(problems_table(tally.problems, problem_total))
    undelivered = sum(counts.get(name, 0) for name in ("rejected", "failed", "unknown"))
    stopped = result.interrupted_by is not None or result.fatal is not None
    if result.letters_unwritten:
        kept = (
            "those lines are not marked settled: run the same command again once it can be written"
            if state_path is not None
            else "those events are not in it; the lines above say which they were"
        )
        err.print(
            f"could not write {plural(result.letters_unwritten, 'dead letter')} to {dead_letter}"
            f" ({result.letters_error}); {kept}",
            markup=False,
            highlight=False,
        )
    elif undelivered and dead_letter.exists() and not (stopped and rerun is not None):
        out.print(
            f"{plural(undelivered, 'event')} not delivered went to {dead_letter}; re-send with:\n"
            f"  billing-events replay {provider.name} {dead_letter}",
            markup=False,
            highlight=False,
        )
    if stopped:
        why = "interrupted" if result.fatal is None else f"stopped: {result.fatal}"
        if state_path is not None:
            err.print(
                f"{why}; the lines settled so far are saved in {state_path}. Run the same command again"
                " to resume: it skips them and sends the rest with the same keys and timestamps.",
                markup=False,
                highlight=False,
            )
        else:
            err.print(f"{why}; {records:,} records are settled.", markup=False, highlight=False)
            if rerun is not None:
                out.print(
                    f"What it did not reach is only in {label}, so run it again with the same options (what"
                    f" was delivered goes again under the same keys, and the provider keeps one of each):\n  {rerun}",
                    markup=False,
                    highlight=False,
                )


def finish(
    args: argparse.Namespace,
    provider: Provider,
    label: str,
    result: RunResult,
    dead_letter: Path,
    state_path: Path | None,
    out: Console,
    err: Console,
    rerun: str | None = None,
) -> int:
    print_outcome(
        out,
        err,
        provider=provider,
        label=label,
        result=result,
        dead_letter=dead_letter,
        state_path=state_path,
        rerun=rerun,
    )
    code = result.exit_code
    if args.report is not None:
        tally = result.tally
        write_report_or_say(
            err,
            args.report,
            {
                "provider": provider.name,
                "input": label,
                "records": tally.records,
                "counts": {name: tally.counts.get(name, 0) for name in COUNTED},
                "exit_code": code,
                "finished": tally.finished,
                "records_this_run": result.records_this_run,
                "records_settled_earlier": tally.earlier,
                "elapsed_seconds": round(result.elapsed, 3),
                "interrupted": result.interrupted_by is not None,
                "fatal": result.fatal,
                "dead_letter": str(dead_letter) if dead_letter.exists() else None,
                "dead_letters_unwritten": result.letters_unwritten,
                "state": str(state_path) if state_path is not None else None,
                "problems": [problem.to_json() for problem in tally.problems],
            },
        )
    return code
