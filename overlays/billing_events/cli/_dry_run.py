"""``--dry-run``: check every record as the run would and report problems by line; send nothing.

The run's own checks judge each line: a Lago line without a timestamp that no state
could keep, a key an earlier line gave to a different event (``_lines``), then the spec.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console

from .._keys import Occurrences, content_digest, give_key
from ..errors import InvalidEventError
from ..providers import ProviderRules
from ._exit import EXIT_OK, EXIT_REJECTED
from ._input import Record
from ._key_conflicts import KeyRegistry
from ._lines import key_conflicts, stamp_problem
from ._providers import Provider
from ._state import MAX_PROBLEMS_KEPT, Problem
from ._summary import write_report_or_say
from ._text import clip

# Records checked together: one look-up of their keys at a time.
BLOCK_RECORDS = 4096


def dry_run(
    out: Console,
    err: Console,
    records: Iterator[Record],
    provider: Provider,
    label: str,
    *,
    batch_events: int,
    stamps_kept: bool,
    report: Path | None,
) -> int:
    """``stamps_kept``: the run would have a state to keep the timestamps it gives Lago lines."""
    rules = provider.rules(batch_events)
    checked = 0
    # As the run would count them: unreadable lines are invalid, the rest it refuses rejected.
    counts = {"invalid": 0, "rejected": 0}
    kept: list[Problem] = []
    keys = KeyRegistry()
    occurrences = Occurrences()  # as the run numbers copies: a derived key's length counts in a size
    try:
        while block := list(itertools.islice(records, BLOCK_RECORDS)):
            checked += len(block)
            for problem in _check_block(block, provider, rules, keys, occurrences, stamps_kept=stamps_kept):
                out.print(f"{label}:{problem.line}: {problem.reason}", markup=False, highlight=False)
                counts[problem.status] += 1
                if len(kept) < MAX_PROBLEMS_KEPT:
                    kept.append(problem)
    finally:
        keys.close()
        occurrences.close()
    invalid = sum(counts.values())
    verdict = "no problems" if not invalid else f"{invalid:,} with problems"
    out.print(
        f"dry run: checked {checked:,} events of {label} for {provider.title}: {verdict}; nothing was sent"
    )
    code = EXIT_OK if not invalid else EXIT_REJECTED
    if report is not None:
        write_report_or_say(
            err,
            report,
            {
                "provider": provider.name,
                "input": label,
                "dry_run": True,
                "records": checked,
                "counts": counts,
                "exit_code": code,
                "problems": [problem.to_json() for problem in kept],
            },
        )
    return code


def _check_block(
    block: list[Record],
    provider: Provider,
    rules: ProviderRules,
    keys: KeyRegistry,
    occurrences: Occurrences,
    *,
    stamps_kept: bool,
) -> list[Problem]:
    """The problems of a block of records, in line order, in the order the run meets them."""
    readable = [record for record in block if record.event is not None]
    events = [record.event for record in readable if record.event is not None]
    digests = [content_digest(event) for event in events]
    numbers = occurrences.number(digests) if digests else []
    conflicts = key_conflicts(events, digests, [record.line for record in readable], provider, keys)
    problems: list[Problem] = []
    at = -1  # the index of the record among the readable ones
    for record in block:
        event = record.event
        if event is None:
            problems.append(Problem(record.line, "invalid", clip(record.problem or "invalid")))
            continue
        at += 1
        unstamped = stamp_problem(event, provider, stamps_kept=stamps_kept)
        if unstamped is not None:
            problems.append(Problem(record.line, "invalid", unstamped))
        elif at in conflicts:
            key = clip(str(event.get(provider.key_field)))
            problems.append(Problem(record.line, "rejected", conflicts[at], key))
        else:
            # The key the run would derive for a line without one: checked, and sized, with one as long.
            event = dict(event)
            give_key(event, provider.key_field, digests[at], numbers[at])
            try:
                rules.prepare(event)
            except InvalidEventError as exc:
                problems.append(Problem(record.line, "rejected", clip(str(exc)), exc.key))
    return problems
