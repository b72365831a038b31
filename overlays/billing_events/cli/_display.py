"""The live progress bar and the final summary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from ..stats import Stats
from ._state import Problem
from ._text import clip

# Outcome names as the command line counts them; "invalid" lines were never sent.
COUNTED = ("delivered", "duplicate", "rejected", "failed", "unknown", "invalid")
_STYLES = {
    "delivered": "green",
    "duplicate": "green",
    "rejected": "yellow",
    "failed": "red",
    "unknown": "red",
    "invalid": "yellow",
}
SHOWN_PROBLEMS = 20


class _RateColumn(ProgressColumn):
    """Events per second settled by this run (records of an earlier run do not count)."""

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time or task.elapsed
        done = task.completed - int(task.fields.get("initial", 0))
        if not elapsed or done <= 0:
            return Text("- ev/s", style="cyan")
        return Text(f"{done / elapsed:,.0f} ev/s", style="cyan")


def pace_note(stats: Stats | None) -> str:
    """The pace, once the rate budget holds requests back (they waited for it, or 429s came)."""
    if stats is None or stats.pace is None or not (stats.budget_wait or stats.throttled):
        return ""
    pace = f"{stats.pace:,.0f}" if stats.pace >= 10 else f"{stats.pace:.2g}"  # 0.4 req/s is not "0"
    return f"paced {pace} req/s" + (f", {stats.throttled:,} throttled" if stats.throttled else "")


def format_counts(counts: Mapping[str, int]) -> Text:
    text = Text()
    for name in COUNTED:
        count = counts.get(name, 0)
        if count or name == "delivered":
            if text:
                text.append("  ")
            text.append(f"{name} {count:,}", style=_STYLES[name])
    return text


class ProgressDisplay:
    """A progress bar on stderr, updated as chunks settle; silent when disabled."""

    def __init__(self, console: Console, *, enabled: bool, description: str, total: int | None) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[counts]}"),
            TextColumn("{task.fields[pace]}", style="yellow"),
            console=console,
            disable=not enabled,
        )
        self._task: TaskID = self._progress.add_task(
            description, total=total, counts=Text(), initial=0, pace=""
        )

    def __enter__(self) -> ProgressDisplay:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._progress.stop()

    def advance(self, records: int, counts: Mapping[str, int], stats: Stats | None = None) -> None:
        self._progress.update(
            self._task, advance=records, counts=format_counts(counts), pace=pace_note(stats)
        )

    def finish(self) -> None:
        task = self._progress.tasks[0]
        self._progress.update(self._task, total=task.completed)


def summary_table(title: str, counts: Mapping[str, int], *, records: int) -> Table:
    table = Table(title=title, title_justify="left", show_footer=True)
    table.add_column("outcome", footer="total")
    table.add_column("events", justify="right", footer=f"{records:,}")
    for name in COUNTED:
        table.add_row(Text(name, style=_STYLES[name]), f"{counts.get(name, 0):,}")
    return table


def rate_line(records: int, elapsed: float) -> str:
    rate = f" ({records / elapsed:,.0f} events/s)" if elapsed > 0 and records else ""
    return f"this run settled {records:,} records in {elapsed:.1f} s{rate}"


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def problems_table(problems: Sequence[Problem], total: int) -> Table:
    shown = sorted(problems, key=lambda problem: problem.line)[:SHOWN_PROBLEMS]
    table = Table(title="lines not delivered", title_justify="left")
    table.add_column("line", justify="right")
    table.add_column("outcome")
    table.add_column("reason", overflow="fold")
    for problem in shown:
        table.add_row(
            str(problem.line),
            Text(problem.status, style=_STYLES.get(problem.status, "")),
            clip(problem.reason),
        )
    if total > len(shown):
        table.caption = f"… and {total - len(shown):,} more"
        table.caption_justify = "left"
    return table
