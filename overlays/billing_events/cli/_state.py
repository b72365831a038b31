"""The checkpoint that lets an interrupted ingestion resume where it stopped.

It is rewritten (write to a temporary file, then rename) after every chunk
that settles in input order, so a killed process leaves either the previous
checkpoint or the new one, never half of one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
from attrs import define, field

STATE_VERSION = 1
# The state keeps the first problems for the final summary; the counts stay exact.
MAX_PROBLEMS_KEPT = 1000


class StateError(Exception):
    """The checkpoint cannot be used for this input."""


@define
class Problem:
    """A line that did not end delivered: why, and under which key it was sent."""

    line: int
    status: str
    reason: str
    key: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "status": self.status, "reason": self.reason, "key": self.key}


@define
class Checkpoint:
    """Progress through one input file for one provider.

    Every record that starts before ``next_line`` is settled and counted in
    ``counts``; nothing at or after it has been.
    """

    provider: str
    input_sha256: str
    next_line: int = 1
    records_done: int = 0
    counts: dict[str, int] = field(factory=dict)
    problems: list[Problem] = field(factory=list)
    finished: bool = False

    def add_problem(self, problem: Problem) -> None:
        if len(self.problems) < MAX_PROBLEMS_KEPT:
            self.problems.append(problem)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "provider": self.provider,
            "input_sha256": self.input_sha256,
            "next_line": self.next_line,
            "records_done": self.records_done,
            "counts": self.counts,
            "problems": [problem.to_json() for problem in self.problems],
            "finished": self.finished,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        if data.get("version") != STATE_VERSION:
            raise StateError(f"unsupported state version {data.get('version')!r}")
        return cls(
            provider=str(data["provider"]),
            input_sha256=str(data["input_sha256"]),
            next_line=int(data["next_line"]),
            records_done=int(data["records_done"]),
            counts={str(name): int(count) for name, count in data["counts"].items()},
            problems=[
                Problem(int(p["line"]), str(p["status"]), str(p["reason"]), p.get("key"))
                for p in data["problems"]
            ],
            finished=bool(data["finished"]),
        )


def load(path: Path, *, provider: str, input_sha256: str) -> Checkpoint | None:
    """The checkpoint at ``path`` for this input, or None when there is none yet."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read state file {path}: {exc.strerror or exc}") from exc
    try:
        checkpoint = Checkpoint.from_json(orjson.loads(raw))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateError(f"state file {path} is not a checkpoint of this tool ({exc})") from exc
    if checkpoint.provider != provider:
        raise StateError(f"state file {path} belongs to a {checkpoint.provider} ingestion, not {provider}")
    if checkpoint.input_sha256 != input_sha256:
        raise StateError(
            f"state file {path} was written for different input content; the file changed since."
            " Pass --restart to start over (its lines get new idempotency keys)"
        )
    return checkpoint


def save(path: Path, checkpoint: Checkpoint) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(orjson.dumps(checkpoint.to_json(), option=orjson.OPT_INDENT_2))
    os.replace(temporary, path)
