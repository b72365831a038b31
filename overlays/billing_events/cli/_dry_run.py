"""``--dry-run``: check every record against the spec and report problems by line; send nothing."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator, Sequence

import orjson
from rich.console import Console

from .._spill import SpillMap
from ..errors import InvalidEventError
from ..providers import ProviderRules
from ._exit import EXIT_OK, EXIT_REJECTED
from ._input import Record
from ._providers import Provider
from ._text import clip

# Records checked together: one look-up of their keys at a time.
BLOCK_RECORDS = 4096


class FirstLines:
    """The first line of each key (a 16-byte digest of the key and its scope), seen in the order given.

    Digests live in a dict up to ``MEMORY_KEYS`` keys, then on disk (``SpillMap``), so a file of
    millions of keys is checked in flat memory.
    """

    MEMORY_KEYS = 200_000

    def __init__(self) -> None:
        self._lines: SpillMap[int] = SpillMap(self.MEMORY_KEYS)

    def first(self, digests: Sequence[bytes], lines: Sequence[int]) -> list[int]:
        """For each digest, the first line that had it: its own line when none did before."""
        known = self._lines.get_many(digests)
        new: dict[bytes, int] = {}
        firsts: list[int] = []
        for digest, line in zip(digests, lines, strict=True):
            first = known.get(digest) or new.setdefault(digest, line)
            firsts.append(first)
        self._lines.put_many(new)
        return firsts

    def close(self) -> None:
        self._lines.close()


def _key_digest(key: str, scope: object) -> bytes:
    return hashlib.blake2b(orjson.dumps([key, scope], default=repr), digest_size=16).digest()


def dry_run(
    out: Console, records: Iterator[Record], provider: Provider, label: str, batch_events: int
) -> int:
    rules = provider.rules(batch_events)
    checked = 0
    invalid = 0
    first_lines = FirstLines()
    try:
        while block := list(itertools.islice(records, BLOCK_RECORDS)):
            checked += len(block)
            invalid += _check_block(out, block, provider, rules, label, first_lines)
    finally:
        first_lines.close()
    verdict = "no problems" if not invalid else f"{invalid:,} with problems"
    out.print(
        f"dry run: checked {checked:,} events of {label} for {provider.title}: {verdict}; nothing was sent"
    )
    return EXIT_OK if not invalid else EXIT_REJECTED


def _check_block(
    out: Console,
    block: list[Record],
    provider: Provider,
    rules: ProviderRules,
    label: str,
    first_lines: FirstLines,
) -> int:
    """Print the problems of a block of records, in line order; how many records had one."""
    problems: list[str | None] = []
    keyed: list[tuple[int, str, bytes]] = []  # (index in the block, key, digest)
    for index, record in enumerate(block):
        problem = record.problem
        if record.event is not None:
            try:
                rules.prepare(record.event)
            except InvalidEventError as exc:
                problem = clip(str(exc))
        if record.event is None or problem is not None:
            problems.append(clip(problem or "invalid"))
            continue
        problems.append(None)
        key = record.event.get(provider.key_field)
        if isinstance(key, str):
            scope = record.event.get(provider.key_scope) if provider.key_scope else None
            keyed.append((index, key, _key_digest(key, scope)))
    firsts = first_lines.first(
        [digest for _, _, digest in keyed], [block[index].line for index, _, _ in keyed]
    )
    for (index, key, _), earlier in zip(keyed, firsts, strict=True):
        if earlier != block[index].line:
            problems[index] = (
                f"{provider.key_field}: {clip(repr(key), 120)} is also the key of line {earlier};"
                f" {provider.title} would keep only one of them"
            )
    for record, problem in zip(block, problems, strict=True):
        if problem is not None:
            out.print(f"{label}:{record.line}: {problem}", markup=False, highlight=False)
    return sum(problem is not None for problem in problems)
