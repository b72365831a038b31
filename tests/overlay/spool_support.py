"""Spools made and killed directly, for the review tests of adoption and salvage (no sender around them)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import orjson
import pytest

from billing_events import SpoolConfig, Togai
from billing_events.providers import Pending
from billing_events.spool._spool import Spool

DESTINATION = "https://togai.example/api"


def togai_spool(directory: Path, token: str = "spool-support-token") -> Spool:
    """A Togai spool of the default durability ("group": SQLite commits synced by the keeper)."""
    rules = Togai(token, base_url=DESTINATION).rules
    return Spool(rules, SpoolConfig(directory), DESTINATION, 1_000, 1 << 20)


def killed(spool: Spool) -> None:
    """As a SIGKILL leaves it: the SQLite connection and the flock let go, no file removed."""
    spool._stop.set()
    spool._keeper.join(10)
    spool._adopter.join(10)
    spool._store.db.close()
    os.close(spool._own.fd)


def next_batch(spool: Spool) -> list[Pending]:
    """As a sender takes a batch: read back from the file (without its lock), then take from memory."""
    spool.read_back()
    return spool.take_batch()


def drained_ids(spool: Spool) -> list[str]:
    ids: list[str] = []
    while batch := next_batch(spool):
        ids.extend(orjson.loads(pending.payload)["id"] for pending in batch)
    return ids


def offer_events(spool: Spool, events: int) -> None:
    for number in range(events):
        spool.offer(
            b'{"id":"ev-%d","event_name":"e","account_id":"a","event_timestamp":"2024-01-01T00:00:00Z"}'
            % number
        )


def damaged_dead_file(directory: Path, events: int) -> None:
    """A dead sender's file whose events all moved into SQLite (and stay in the intake's only segment),
    its SQLite part then torn: only its first part reads."""
    dead = togai_spool(directory)
    offer_events(dead, events)
    with dead._db_lock:
        dead._move_now()
    killed(dead)
    [left] = directory.glob("*.spool")
    with left.open("r+b") as file:
        file.truncate(left.stat().st_size * 2 // 3)


def unreadable_intakes(patch: pytest.MonkeyPatch) -> None:
    """Every read of an intake file fails as a bad sector makes it fail (EIO); other files read as ever."""
    read_bytes = Path.read_bytes

    def failing(path: Path) -> bytes:
        if ".intake-" in path.name:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return read_bytes(path)

    patch.setattr(Path, "read_bytes", failing)
