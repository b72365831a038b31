"""Every event accounted for, however a background sender's life ends: Ctrl-C in close(), a damaged spool."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from billing_events import SpoolConfig, Togai, read_dead_letters
from billing_events.mock import create_app
from billing_events.mock.testing import serve_in_thread
from billing_events.spool import _intake as spool_intake
from billing_events.spool import _spool as spool_module
from billing_events.spool._adopt import fold_intake

from .scripted import togai_event
from .test_spool import POLICY, base_url, killed_holder, prepare, stored_keys

TOKEN = "test-token"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve_in_thread(create_app()) as url:
        yield url


def stored_ids(server: str) -> set[str]:
    return {event["id"] for event in httpx.get(f"{server}/_mock/events/togai").json()}


def test_ctrl_c_during_close_dead_letters_what_it_did_not_send(server: str, tmp_path: Path) -> None:
    """The interrupt ends the program: the exit hook must not take the sender for closed and lose the rest."""
    httpx.post(f"{server}/_mock/reset").raise_for_status()
    httpx.put(f"{server}/_mock/faults", json={"latency_ms": 200}).raise_for_status()
    letters = tmp_path / "dead.jsonl"
    script = textwrap.dedent(
        """
        import os, signal, sys, threading
        from billing_events import Togai
        once = threading.Lock()
        def interrupt(outcome):
            # Ctrl-C once the drain is under way (20 requests of 0.2 s each): at the first answer,
            # however slow the machine, never on a timer that a loaded machine can outrun.
            if once.acquire(blocking=False):
                os.kill(os.getpid(), signal.SIGINT)
        api = Togai(os.environ["TOKEN"], base_url=os.environ["BASE"], max_batch_events=10,
                    dead_letter_path=os.environ["LETTERS"])
        sender = api.background(flush_interval=3600, on_outcome=interrupt)
        for n in range(200):
            sender.track({"id": f"evt-{n}", "schemaName": "calls", "timestamp": "2024-05-01T10:15:30Z",
                          "accountId": "acme", "attributes": [], "dimensions": {}})
        sender.close(30)
        print("close returned")
        """
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "TOKEN": TOKEN, "BASE": f"{server}/togai", "LETTERS": str(letters)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        httpx.put(f"{server}/_mock/faults", json={"latency_ms": 0}).raise_for_status()
    assert "KeyboardInterrupt" in result.stderr, result.stderr
    assert "close returned" not in result.stdout
    stored = stored_ids(server)
    dead = {letter.key: letter.status for letter in read_dead_letters(letters)} if letters.exists() else {}
    assert 0 < len(stored) < 200
    lost = {f"evt-{n}" for n in range(200)} - stored - set(dead)
    assert not lost, f"{len(lost)} events ended with no outcome"
    assert set(dead.values()) <= {"failed", "unknown"}
    assert not {key for key, status in dead.items() if status == "failed"} & stored


def test_an_intake_record_with_a_damaged_length_keeps_the_records_after_it(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bit flipped in a record's length field: the records after it are found again, not deleted."""
    provider = prepare(server, "togai")
    url = base_url(server, provider)
    directory = tmp_path / "spool"
    monkeypatch.setattr(spool_module, "MOVE_AFTER", 3600.0)  # the killed child's events stay in the intake
    killed_holder(directory, url, provider, "length", 300)
    [intake] = directory.glob("*.intake-*")
    data = bytearray(intake.read_bytes())
    first_length = spool_intake.RECORD.unpack_from(data, 0)[0]
    second = spool_intake.RECORD_SIZE + first_length
    length, *rest = spool_intake.RECORD.unpack_from(data, second)
    spool_intake.RECORD.pack_into(data, second, length | 1 << 30, *rest)
    intake.write_bytes(bytes(data))
    monkeypatch.undo()

    caplog.set_level(logging.ERROR, logger="billing_events")
    with Togai(TOKEN, base_url=url, retry=POLICY) as api:
        stats = api.background(spool=directory).close(30)
    stored = set(stored_keys(server, provider))
    assert {f"length-{n}" for n in range(300)} - stored == {"length-1"}
    assert stats.recovered == 299
    assert "1 damaged intake records" in caplog.text
    assert [path.name for path in directory.glob("*.intake-*.damaged-*")]


def test_a_damaged_file_whose_intake_does_not_fit_keeps_its_intake_for_later(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead sender's SQLite file is damaged and its intake does not fit the adopter's spool: the intake
    waits for room; it is not deleted at the next scan as if the file had been taken over."""
    provider = prepare(server, "togai")
    url = base_url(server, provider)
    directory = tmp_path / "spool"
    monkeypatch.setattr(spool_module, "MOVE_AFTER", 3600.0)  # the killed child's events stay in the intake
    killed_holder(directory, url, provider, "salvage", 400)
    monkeypatch.undo()
    [left] = directory.glob("*.spool")
    left.write_bytes(b"not a database " * 100)  # a bad sector, say; its WAL lost with it
    left.with_name(left.name + "-wal").unlink()

    with Togai(TOKEN, base_url=url, retry=POLICY, max_batch_bytes=65_536) as api:
        small = api.background(spool=SpoolConfig(directory, max_bytes=65_536))  # 400 events need ~110 kB
        assert small.flush(30)  # a scan for dead senders' files
        small.close(30)
    with Togai(TOKEN, base_url=url, retry=POLICY) as api:
        stats = api.background(spool=directory).close(30)
    assert stats.recovered == 400
    assert set(stored_keys(server, provider)) == {f"salvage-{n}" for n in range(400)}


def test_close_from_an_outcome_callback_does_not_stall_the_sender(server: str) -> None:
    """The callback runs on the worker thread: a close() there must not wait for that thread itself."""
    httpx.post(f"{server}/_mock/reset").raise_for_status()
    httpx.put(f"{server}/_mock/faults", json={"latency_ms": 100}).raise_for_status()
    stopped: list[object] = []
    try:
        with Togai(TOKEN, base_url=f"{server}/togai", max_batch_events=50) as api:

            def stop(outcome: object) -> None:
                if not stopped:  # the first outcome stops the sender (a fatal answer, say)
                    stopped.append(sender.close())

            sender = api.background(flush_interval=3600, on_outcome=stop)
            for number in range(200):
                sender.track(togai_event(number, id=f"evt-{number}"))
            stats = sender.close(3)  # four requests of 0.1 s: plenty of time
    finally:
        httpx.put(f"{server}/_mock/faults", json={"latency_ms": 0}).raise_for_status()
    assert stopped, "the callback never ran"
    assert stats.delivered == 200, stats
    assert len(stored_ids(server)) == 200


def run_script(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env={**os.environ, "TOKEN": TOKEN, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_sender_closed_from_an_outcome_callback_is_still_drained_at_exit(
    server: str, tmp_path: Path
) -> None:
    """A callback that stops the sender (on a fatal outcome, say) runs on the worker thread."""
    httpx.post(f"{server}/_mock/reset").raise_for_status()
    httpx.put(f"{server}/_mock/faults", json={"latency_ms": 100}).raise_for_status()
    letters = tmp_path / "dead.jsonl"
    try:
        result = run_script(
            """
            import os
            from billing_events import Togai
            api = Togai(os.environ["TOKEN"], base_url=os.environ["BASE"], max_batch_events=10,
                        dead_letter_path=os.environ["LETTERS"])
            import threading
            stopped = threading.Event()
            def stop(outcome):
                if not stopped.is_set():  # the first outcome stops the sender
                    try:
                        sender.close(5)
                    finally:
                        stopped.set()
            sender = api.background(flush_interval=3600, on_outcome=stop)
            for n in range(200):
                sender.track({"id": f"evt-{n}", "schemaName": "calls", "timestamp": "2024-05-01T10:15:30Z",
                              "accountId": "acme", "attributes": [], "dimensions": {}})
            sender.flush(0.001)  # wakes the worker
            stopped.wait(10)
            # the program ends here: the exit hook must still deliver what is queued
            """,
            BASE=f"{server}/togai",
            LETTERS=str(letters),
        )
    finally:
        httpx.put(f"{server}/_mock/faults", json={"latency_ms": 0}).raise_for_status()
    assert result.returncode == 0, result.stderr
    stored = stored_ids(server)
    dead = {letter.key: letter.status for letter in read_dead_letters(letters)} if letters.exists() else {}
    assert not dead, f"{len(dead)} events dead-lettered though the server was healthy"
    assert stored == {f"evt-{n}" for n in range(200)}


def test_a_salvage_cut_short_by_a_flush_deadline_goes_on_at_the_next_scan(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short flush() meets a torn file of a dead sender: what it could not read in time is read later,
    not set aside with the damaged file and never sent."""
    provider = prepare(server, "togai")
    url = base_url(server, provider)
    directory = tmp_path / "spool"
    monkeypatch.setattr(spool_module, "ADOPT_EVERY", 3600.0)  # only the flush() calls below scan
    monkeypatch.setattr(spool_module, "MOVE_AFTER", 3600.0)  # the killed child's events stay in the intake
    with Togai(TOKEN, base_url=url, retry=POLICY) as api:
        sender = api.background(spool=directory)
        killed_holder(directory, url, provider, "torn", 2000)
        # The one file with an intake (the forked child also left an empty file of this sender's).
        [left] = [path for path in directory.glob("*.spool") if list(directory.glob(f"{path.name}.intake-*"))]
        with contextlib.closing(sqlite3.connect(left, isolation_level=None)) as db:
            fold_intake(db, left)  # every event in the main file, as after a checkpoint
        with left.open("r+b") as file:  # then a power loss kept only the first part of the file
            file.truncate(left.stat().st_size * 2 // 3)
        sender.flush(0.000_001)
        assert sender.flush(30)
        stats = sender.close(30)
    stored = stored_keys(server, provider)
    assert stats.recovered > 1000  # about two thirds of the rows survived the truncation
    assert len(stored) == len(set(stored)) == stats.recovered


def test_ctrl_c_during_the_exit_hook_accounts_for_every_sender(server: str, tmp_path: Path) -> None:
    """The exit hook closes one sender after another: an impatient Ctrl-C in the first leaves none unaccounted."""
    httpx.post(f"{server}/_mock/reset").raise_for_status()
    httpx.put(f"{server}/_mock/faults", json={"latency_ms": 200}).raise_for_status()
    letters = tmp_path / "dead.jsonl"
    try:
        result = run_script(
            """
            import os, signal, threading
            from billing_events import Togai
            def event(n):
                return {"id": f"evt-{n}", "schemaName": "calls", "timestamp": "2024-05-01T10:15:30Z",
                        "accountId": "acme", "attributes": [], "dimensions": {}}
            once = threading.Lock()
            def interrupt(outcome):
                # Ctrl-C at the first answer (each request takes 0.2 s): while the exit hook drains.
                if once.acquire(blocking=False):
                    os.kill(os.getpid(), signal.SIGINT)
            senders = [
                Togai(os.environ["TOKEN"], base_url=os.environ["BASE"], max_batch_events=10,
                      dead_letter_path=os.environ["LETTERS"]).background(flush_interval=3600,
                                                                       on_outcome=interrupt)
                for _ in range(2)
            ]
            for n in range(200):
                senders[n % 2].track(event(n))
            """,
            BASE=f"{server}/togai",
            LETTERS=str(letters),
        )
    finally:
        httpx.put(f"{server}/_mock/faults", json={"latency_ms": 0}).raise_for_status()
    assert "KeyboardInterrupt" in result.stderr, result.stderr
    stored = stored_ids(server)
    dead = {letter.key: letter.status for letter in read_dead_letters(letters)} if letters.exists() else {}
    assert len(stored) < 200
    lost = {f"evt-{n}" for n in range(200)} - stored - set(dead)
    assert not lost, f"{len(lost)} events ended with no outcome"
    assert not {key for key, status in dead.items() if status == "failed"} & stored
