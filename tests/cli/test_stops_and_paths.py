"""A run stopped while batches are in flight, and runs whose files get in each other's way.

Each event read ends with an outcome the user can see: in the summary and the
``--report`` counts, and in the dead-letter file when it was not delivered.
"""

from __future__ import annotations

import asyncio
import errno
import io
import os
import signal
import sqlite3
import tempfile
import tracemalloc
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest

from billing_events import Report
from billing_events.cli import main
from billing_events.cli._run import EventSender
from billing_events.cli._state import State, StateError
from cli.conftest import Mock
from cli.support import (
    RunCli,
    freeze_monotonic,
    make_event,
    read_jsonl,
    report_of,
    wrapped_sender,
    write_jsonl,
)

PROVIDERS = ["togai", "lago"]


class StoppingSender:
    """Passes batches to the real client; on call ``stop_on`` it signals its own process first."""

    def __init__(self, inner: EventSender, stop_on: int, signum: signal.Signals) -> None:
        self._inner = inner
        self._stop_on = stop_on
        self._signum = signum
        self.calls = 0

    async def send(self, events: Iterable[Mapping[str, Any]]) -> Report:
        self.calls += 1
        if self.calls == self._stop_on:
            # The CLI's handler runs on the event loop's next turn, while this batch is in flight.
            os.kill(os.getpid(), self._signum)
        return await self._inner.send(events)


@contextmanager
def stop_on_call(monkeypatch: pytest.MonkeyPatch, call: int, signum: signal.Signals) -> Iterator[None]:
    with wrapped_sender(monkeypatch, lambda client: StoppingSender(client, call, signum)):
        yield


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_stop_counts_the_batches_in_flight_as_their_dead_letters_say(
    run_cli: RunCli,
    mock: Mock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    signum: signal.Signals,
) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [make_event(provider, index) for index in range(40)])
    options = ("--batch-events", "10", "--max-in-flight", "1", "--report", "report.json")
    mock.faults(latency_ms=500)
    with stop_on_call(monkeypatch, 2, signum):
        stopped = run_cli("ingest", provider, str(source), *options)

    assert stopped.code == 128 + signum, stopped.err
    report = report_of(Path("report.json"))
    counts = report["counts"]
    dead = read_jsonl(tmp_path / f"events.jsonl.{provider}.dead-letter.jsonl")
    # The first batch was delivered; the one in flight has the outcome its dead letters carry.
    assert counts["delivered"] == 10
    assert counts["unknown"] + counts["failed"] == len(dead) == 10
    assert report["records"] == 20
    assert "went to" in stopped.out

    mock.faults(latency_ms=0)
    resumed = run_cli("ingest", provider, str(source), "--report", "report.json")

    assert resumed.code == 0, resumed.out + resumed.err
    assert report_of(Path("report.json"))["records_settled_earlier"] == 10
    keys = mock.keys(provider)
    assert len(keys) == len(set(keys)) == 40


def test_a_state_of_another_server_is_refused_rather_than_skipping_its_lines(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [make_event("togai", index) for index in range(20)])
    # Tried against one server (a sandbox, say) first: every line settled there.
    assert run_cli("ingest", "togai", str(source)).code == 0
    elsewhere = mock.togai_url.replace("127.0.0.1", "localhost")
    mock.reset()

    refused = run_cli("ingest", "togai", str(source), "--base-url", elsewhere)

    assert refused.code == 64
    assert "--restart" in refused.err
    assert mock.stats("togai")["requests"] == 0

    restarted = run_cli("ingest", "togai", str(source), "--base-url", elsewhere, "--restart")

    assert restarted.code == 0, restarted.out + restarted.err
    assert len(set(mock.keys("togai"))) == 20
    # The state now belongs to the new server: a run there resumes as usual.
    assert "nothing to send" in run_cli("ingest", "togai", str(source), "--base-url", elsewhere).out


@pytest.mark.parametrize("option", ["--dead-letter", "--state", "--report"])
def test_an_output_over_the_input_is_refused_and_the_input_kept(
    run_cli: RunCli, mock: Mock, tmp_path: Path, option: str
) -> None:
    lines = [make_event("togai", index) for index in range(5)]
    lines.append(make_event("togai", 5, timestamp="yesterday"))  # rejected: a dead letter to write
    source = write_jsonl(tmp_path / "events.jsonl", lines)
    before = source.read_bytes()

    result = run_cli("ingest", "togai", str(source), option, str(source))

    assert result.code == 64
    assert "same file" in result.err
    assert source.read_bytes() == before
    assert mock.stats("togai")["requests"] == 0


def test_a_replay_report_over_its_dead_letter_file_is_refused(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    letters = [
        {"provider": "lago", "key": f"k{index}", "status": "failed", "event": make_event("lago", index)}
        for index in range(5)
    ]
    dead = write_jsonl(
        tmp_path / "dead.jsonl",
        [{**letter, "event": {**letter["event"], "transaction_id": letter["key"]}} for letter in letters],
    )
    before = dead.read_bytes()

    result = run_cli("replay", "lago", str(dead), "--report", str(dead))

    assert result.code == 64
    # A report written over the letters would have lost every one not replayed yet.
    assert dead.read_bytes() == before
    assert mock.stats("lago")["requests"] == 0


# Togai deduplicates on the id alone; Lago's ClickHouse store on the key and the timestamp.
@pytest.mark.parametrize(("provider", "missing"), [("togai", "key"), ("lago", "key"), ("lago", "timestamp")])
def test_a_letter_without_what_the_provider_dedups_on_is_not_replayed(
    run_cli: RunCli, mock: Mock, tmp_path: Path, provider: str, missing: str
) -> None:
    key_field = "id" if provider == "togai" else "transaction_id"
    event = make_event(provider, 1, **{key_field: "k-1"})
    event.pop(key_field if missing == "key" else "timestamp")
    letter = {"provider": provider, "key": "k-1" if missing != "key" else None, "status": "failed"}
    dead = write_jsonl(tmp_path / "dead.jsonl", [{**letter, "event": event}])

    # A hand-made letter, say: replayed twice, it would be two events under two fresh keys or times.
    first = run_cli("replay", provider, str(dead))
    second = run_cli("replay", provider, str(dead))

    assert first.code == second.code == 1
    assert f"event.{key_field if missing == 'key' else 'timestamp'}: missing" in first.out
    assert mock.stats(provider)["requests"] == 0


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full, a file every write to fails")
def test_dead_letters_that_cannot_be_written_are_said_and_written_by_the_next_run(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    lines = [make_event("togai", 0), make_event("togai", 1, timestamp="yesterday")]
    source = write_jsonl(tmp_path / "events.jsonl", lines)

    full = run_cli("ingest", "togai", str(source), "--dead-letter", "/dev/full", "--report", "report.json")

    assert full.code == 1
    assert "could not write 1 dead letter to /dev/full (No space left on device)" in full.err
    assert "went to" not in full.out
    assert report_of(Path("report.json"))["dead_letters_unwritten"] == 1

    again = run_cli("ingest", "togai", str(source))

    assert again.code == 1
    letters = read_jsonl(tmp_path / "events.jsonl.togai.dead-letter.jsonl")
    assert [letter["status"] for letter in letters] == ["rejected"]
    assert letters[0]["event"]["timestamp"] == "yesterday"


def test_a_state_reached_through_a_symlink_is_locked_as_the_same_state(tmp_path: Path) -> None:
    real = tmp_path / "events.jsonl.lago.state.sqlite"
    link = tmp_path / "elsewhere.sqlite"
    with State.open(real, provider="lago"):
        link.symlink_to(real)

        # Two runs on one state would both stamp the same Lago lines, each with its own time.
        with pytest.raises(StateError, match=f"pid {os.getpid()}"):
            State.open(link, provider="lago")


class FailingStdin(io.RawIOBase):
    """Standard input that gives one line, then fails as a dead terminal does, or is cut by Ctrl-C."""

    def __init__(self, error: BaseException) -> None:
        self.reads = 0
        self.error = error

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if self.reads > 1:
            raise self.error
        return orjson.dumps(make_event("togai", 0)) + b"\n"


@pytest.mark.parametrize(
    ("error", "code", "said"),
    [
        (OSError(errno.EIO, "Input/output error"), 64, "cannot read standard input"),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
    ids=["read-error", "ctrl-c"],
)
def test_standard_input_cut_short_while_spooled_leaves_no_copy(
    mock: Mock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: BaseException,
    code: int,
    said: str,
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again

    assert main(["ingest", "togai", "-"], stdin=FailingStdin(error)) == code

    assert said in capsys.readouterr().err
    assert list(tmp_path.glob("billing-events-*")) == []
    assert mock.stats("togai")["requests"] == 0


@pytest.mark.parametrize("command", ["ingest", "replay"])
def test_a_report_path_that_cannot_be_written_stops_the_run_before_it_sends(
    run_cli: RunCli, mock: Mock, tmp_path: Path, command: str
) -> None:
    event = make_event("togai", 0, id="k-0")
    source = write_jsonl(tmp_path / "events.jsonl", [event])
    if command == "replay":
        source = write_jsonl(tmp_path / "dead.jsonl", [{"provider": "togai", "key": "k-0", "event": event}])

    result = run_cli(command, "togai", str(source), "--report", str(tmp_path / "missing" / "report.json"))

    assert result.code == 64
    assert "cannot write report" in result.err
    assert mock.stats("togai")["requests"] == 0


def test_replay_skips_a_huge_damaged_line_in_bounded_memory(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    event = make_event("togai", 0, id="k-0")
    dead = tmp_path / "dead.jsonl"
    with dead.open("wb") as sink:
        sink.write(b"x" * (40 * 1024 * 1024) + b"\n")
        sink.write(orjson.dumps({"provider": "togai", "key": "k-0", "event": event}) + b"\n")

    tracemalloc.start()
    try:
        result = run_cli("replay", "togai", str(dead))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 10 * 1024 * 1024
    assert result.code == 1
    assert "line is 41,943,041 bytes" in result.out
    assert mock.keys("togai") == ["k-0"]


def test_replay_can_pick_the_events_a_full_background_queue_dropped(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    letters = [
        {"provider": "togai", "key": f"k-{n}", "status": status, "event": make_event("togai", n, id=f"k-{n}")}
        for n, status in enumerate(["dropped", "failed", "dropped"])
    ]
    dead = write_jsonl(tmp_path / "dead.jsonl", letters)

    result = run_cli("replay", "togai", str(dead), "--only", "dropped")

    assert result.code == 0, result.err
    assert sorted(mock.keys("togai")) == ["k-0", "k-2"]


def test_outcomes_count_even_when_the_state_cannot_take_them(
    run_cli: RunCli, mock: Mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [make_event("togai", index) for index in range(30)])
    real_settle = State.settle
    calls = 0

    def settle(self: State, lines: Any) -> bool:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise sqlite3.OperationalError("database or disk is full")
        return real_settle(self, lines)

    monkeypatch.setattr(State, "settle", settle)
    options = ("--batch-events", "10", "--max-in-flight", "1", "--report", "report.json")

    full = run_cli("ingest", "togai", str(source), *options)

    assert full.code == 2
    assert "database or disk is full" in full.err
    # The second batch was delivered: the summary says so, though the state could not record it.
    assert report_of(Path("report.json"))["counts"]["delivered"] == 20


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_key_given_to_two_different_events_far_apart_rejects_the_second(
    run_cli: RunCli, mock: Mock, tmp_path: Path, provider: str
) -> None:
    key_field = "id" if provider == "togai" else "transaction_id"
    first = make_event(provider, 0, **{key_field: "shared"})
    second = {**make_event(provider, 1), key_field: "shared"}  # another event, the same key
    if provider == "lago":
        second["external_subscription_id"] = first["external_subscription_id"]
    others = [make_event(provider, index, **{key_field: f"k-{index}"}) for index in range(2, 12)]
    lines = [first, *others, second, dict(first)]  # the first again: stored once, no conflict
    if provider == "lago":
        # Lago keys are per subscription: the same transaction_id elsewhere is another event's own.
        lines.append({**second, "external_subscription_id": "sub_other"})
    source = write_jsonl(tmp_path / "events.jsonl", lines)

    result = run_cli("ingest", provider, str(source), "--batch-events", "5", "--report", "report.json")

    assert result.code == 1, result.out + result.err
    report = report_of(Path("report.json"))
    assert report["counts"]["rejected"] == 1
    assert [problem["line"] for problem in report["problems"]] == [12]
    assert "also the key of line 1" in report["problems"][0]["reason"]
    letters = read_jsonl(tmp_path / f"events.jsonl.{provider}.dead-letter.jsonl")
    assert [letter["event"] for letter in letters] == [second]
    stored = [event for event in mock.events(provider) if event[key_field] == "shared"]
    assert len(stored) == (1 if provider == "togai" else 2)


def test_dev_null_may_take_both_outputs(run_cli: RunCli, mock: Mock, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [make_event("togai", 0)])

    result = run_cli("ingest", "togai", str(source), "--dead-letter", os.devnull, "--report", os.devnull)

    assert result.code == 0, result.err
    assert mock.stats("togai")["stored"] == 1


class _SlowThirdBatch:
    """Passes batches on; the third takes a minute of a fake clock (the event loop's too), and then
    records what the state file has committed once the loop has had its turns."""

    def __init__(self, inner: EventSender, clock: list[float], state: Path) -> None:
        self._inner = inner
        self._clock = clock
        self._state = state
        self.calls = 0
        self.committed_while_slow = 0

    def _committed(self) -> int:
        with sqlite3.connect(self._state) as reader:
            return int(reader.execute("SELECT count(*) FROM lines WHERE status IS NOT NULL").fetchone()[0])

    async def send(self, events: Iterable[Mapping[str, Any]]) -> Report:
        self.calls += 1
        if self.calls == 3:
            self._clock[0] += 60
            for _ in range(20):  # turns of the loop, not time: its timers run on the same fake clock
                await asyncio.sleep(0)
                self.committed_while_slow = self._committed()
                if self.committed_while_slow == 20:
                    break
        return await self._inner.send(events)


def test_outcomes_settled_just_after_a_commit_are_committed_while_the_next_batch_is_slow(
    run_cli: RunCli, mock: Mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    freeze_monotonic(monkeypatch, lambda: clock[0])
    source = write_jsonl(tmp_path / "events.jsonl", [make_event("togai", index) for index in range(30)])
    state = tmp_path / "events.jsonl.togai.state.sqlite"
    senders: list[_SlowThirdBatch] = []

    def wrap(client: EventSender) -> EventSender:
        senders.append(_SlowThirdBatch(client, clock, state))
        return senders[-1]

    with wrapped_sender(monkeypatch, wrap):
        result = run_cli("ingest", "togai", str(source), "--batch-events", "10", "--max-in-flight", "1")

    assert result.code == 0
    # The first batch is committed at once, the second (no time later) waits for the half second to
    # pass: it does while the third is in flight, and no later settle() is needed to commit it.
    assert senders[0].committed_while_slow == 20
