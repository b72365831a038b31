"""Reading a damaged dead-letter file: a line far longer than any letter is skipped without being held."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import orjson

from billing_events import BadLine, read_dead_letters

HUGE = 40 * 1024 * 1024


def test_a_huge_line_is_reported_and_skipped_in_bounded_memory(tmp_path: Path) -> None:
    letter = {"provider": "togai", "key": "k-1", "status": "failed", "reason": None, "event": {"id": "k-1"}}
    path = tmp_path / "dead.jsonl"
    with path.open("wb") as sink:
        sink.write(b"\0" * HUGE + b"\n")  # something written over the file, say
        sink.write(orjson.dumps(letter) + b"\n")
    bad: list[BadLine] = []

    tracemalloc.start()
    try:
        letters = list(read_dead_letters(path, bad.append))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < HUGE / 4
    assert [found.key for found in letters] == ["k-1"]
    assert [(line.line, "41,943,041 bytes" in line.why) for line in bad] == [(1, True)]
