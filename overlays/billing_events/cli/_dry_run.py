"""``--dry-run``: check every record against the spec and report problems by line; send nothing."""

from __future__ import annotations

from collections.abc import Iterator

from rich.console import Console

from ..errors import InvalidEventError
from ._exit import EXIT_OK, EXIT_REJECTED
from ._input import Record
from ._providers import Provider
from ._text import clip


def dry_run(
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
                problem = clip(str(exc))
        if record.event is None or problem is not None:
            invalid += 1
            out.print(f"{label}:{record.line}: {clip(problem or 'invalid')}", markup=False, highlight=False)
            continue
        key = record.event.get(provider.key_field)
        if isinstance(key, str):
            scope = record.event.get(provider.key_scope) if provider.key_scope else None
            earlier = first_line_of_key.setdefault((key, scope), record.line)
            if earlier != record.line:
                invalid += 1
                out.print(
                    f"{label}:{record.line}: {provider.key_field}: {clip(repr(key), 120)} is also the key of line {earlier};"
                    f" {provider.title} would keep only one of them",
                    markup=False,
                    highlight=False,
                )
    verdict = "no problems" if not invalid else f"{invalid:,} with problems"
    out.print(
        f"dry run: checked {checked:,} events of {label} for {provider.title}: {verdict}; nothing was sent"
    )
    return EXIT_OK if not invalid else EXIT_REJECTED
