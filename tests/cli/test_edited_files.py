"""Keys and timestamps that survive editing, re-sorting and re-running a file (issue 9 item 7, issue 8).

A line without a key is keyed by its own content and its occurrence among
identical lines; the state remembers which lines are settled, and the
timestamp the CLI gave each Lago line that had none.
"""

from __future__ import annotations

import datetime as dt
import io
import random
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from billing_events import Report
from billing_events.cli import _ingest, _lines, main
from billing_events.cli._run import EventSender
from cli.conftest import Mock
from cli.support import RunCli, lago_event, make_event, report_of, togai_event, wrapped_sender, write_jsonl

PROVIDERS = ["togai", "lago"]
HOUR = 3600


def no_restart_advice(*outputs: str) -> None:
    for output in outputs:
        assert "--restart" not in output


@pytest.mark.parametrize("provider", PROVIDERS)
def test_appending_lines_sends_only_the_new_ones(
    run_cli: RunCli, mock: Mock, tmp_path: Path, provider: str
) -> None:
    """1,000 lines then 10 appended (the issue had 100,000; scaled down to keep the test to seconds)."""
    events = [make_event(provider, index) for index in range(1000)]
    source = write_jsonl(tmp_path / "events.jsonl", events)
    first = run_cli("ingest", provider, str(source))
    assert first.code == 0, first.out + first.err

    write_jsonl(source, events + [make_event(provider, 5000 + index) for index in range(10)])
    again = run_cli("ingest", provider, str(source), "--report", "report.json")

    assert again.code == 0, again.out + again.err
    no_restart_advice(again.out, again.err)
    assert report_of(Path("report.json"))["records_this_run"] == 10
    stats = mock.stats(provider)
    assert stats["stored"] == 1010
    assert stats["duplicates"] == 0

    # Sending everything again is harmless: every key is the one the line had before.
    restarted = run_cli("ingest", provider, str(source), "--restart")

    assert restarted.code == 0, restarted.out + restarted.err
    assert mock.stats(provider)["stored"] == 1010


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_resorted_file_keeps_every_key(run_cli: RunCli, mock: Mock, tmp_path: Path, provider: str) -> None:
    events = [make_event(provider, index) for index in range(300)]
    source = write_jsonl(tmp_path / "events.jsonl", events)
    assert run_cli("ingest", provider, str(source)).code == 0
    keys = set(mock.keys(provider))
    requests = mock.stats(provider)["requests"]

    random.Random(3).shuffle(events)
    write_jsonl(source, events)
    again = run_cli("ingest", provider, str(source))

    assert again.code == 0, again.out + again.err
    assert "nothing to send" in again.out
    assert mock.stats(provider)["requests"] == requests
    assert run_cli("ingest", provider, str(source), "--restart").code == 0
    assert set(mock.keys(provider)) == keys
    assert mock.stats(provider)["stored"] == 300


def test_identical_lines_are_told_apart_by_their_occurrence(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    same = togai_event(1)
    source = write_jsonl(tmp_path / "events.jsonl", [same, togai_event(2), same, same])
    assert run_cli("ingest", "togai", str(source)).code == 0
    assert mock.stats("togai")["stored"] == 4

    # A fourth copy is a new event; moving the copies around is not.
    write_jsonl(source, [same, same, togai_event(2), same, same])
    again = run_cli("ingest", "togai", str(source), "--report", "report.json")

    assert again.code == 0, again.out + again.err
    assert report_of(Path("report.json"))["records_this_run"] == 1
    assert mock.stats("togai")["stored"] == 5
    assert mock.stats("togai")["duplicates"] == 0


class RecordingSender:
    """Passes batches to the real client and keeps the events the CLI handed over; can crash on a call."""

    def __init__(self, inner: EventSender, sent: list[dict[str, Any]], crash_on: int | None) -> None:
        self._inner = inner
        self._sent = sent
        self._crash_on = crash_on
        self.calls = 0

    async def send(self, events: Iterable[Mapping[str, Any]]) -> Report:
        batch = [dict(event) for event in events]
        self._sent.extend(batch)
        self.calls += 1
        report = await self._inner.send(batch)
        if self.calls == self._crash_on:
            raise RuntimeError("simulated crash after sending")
        return report


@contextmanager
def recording(
    monkeypatch: pytest.MonkeyPatch, *, crash_on: int | None = None
) -> Iterator[list[dict[str, Any]]]:
    """While active, every event the CLI sends is appended to the yielded list."""
    sent: list[dict[str, Any]] = []
    with wrapped_sender(monkeypatch, lambda client: RecordingSender(client, sent, crash_on)):
        yield sent


def at(monkeypatch: pytest.MonkeyPatch, moment: float) -> None:
    """Runs from now on start at ``moment`` (as if the wall clock had moved on)."""
    monkeypatch.setattr(_ingest, "clock", lambda: moment, raising=False)


def stored_times(mock: Mock) -> dict[str, dt.datetime]:
    return {
        event["transaction_id"]: dt.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
        for event in mock.events("lago")
    }


def as_time(seconds: Any) -> dt.datetime:
    return dt.datetime.fromtimestamp(float(seconds), dt.UTC)


def test_lago_events_without_a_timestamp_are_resent_with_the_timestamp_of_their_first_send(
    run_cli: RunCli, mock: Mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Lago's ClickHouse store the timestamp is part of the dedup key: a re-send must repeat it."""
    start = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC).timestamp()
    events = [{k: v for k, v in lago_event(index).items() if k != "timestamp"} for index in range(30)]
    source = write_jsonl(tmp_path / "events.jsonl", events)
    at(monkeypatch, start)
    assert run_cli("ingest", "lago", str(source)).code == 0
    first = stored_times(mock)
    assert set(first.values()) == {as_time(start)}

    # An hour later: five lines appended, and everything sent again.
    extra = [{k: v for k, v in lago_event(100 + i).items() if k != "timestamp"} for i in range(5)]
    write_jsonl(source, events + extra)
    at(monkeypatch, start + HOUR)
    with recording(monkeypatch) as sent:
        assert run_cli("ingest", "lago", str(source), "--restart").code == 0

    assert len(sent) == 35
    resent = {event["transaction_id"]: as_time(event["timestamp"]) for event in sent}
    assert {key: resent[key] for key in first} == first
    assert {resent[key] for key in resent.keys() - first.keys()} == {as_time(start + HOUR)}
    assert mock.stats("lago")["stored"] == 35


def test_a_resumed_run_resends_the_in_flight_batch_with_its_first_timestamp(
    run_cli: RunCli, mock: Mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC).timestamp()
    events = [{k: v for k, v in lago_event(index).items() if k != "timestamp"} for index in range(40)]
    source = write_jsonl(tmp_path / "events.jsonl", events)
    options = ("--batch-events", "10", "--max-in-flight", "1")
    at(monkeypatch, start)
    with recording(monkeypatch, crash_on=2):
        assert run_cli("ingest", "lago", str(source), *options).code == 2
    assert len(stored_times(mock)) == 20  # the second batch was stored, but its answer never arrived

    at(monkeypatch, start + HOUR)
    with recording(monkeypatch) as sent:
        resumed = run_cli("ingest", "lago", str(source), *options)

    assert resumed.code == 0, resumed.out + resumed.err
    assert len(sent) == 30  # the batch in flight, then the 20 lines never sent
    stored = stored_times(mock)
    assert len(stored) == 40
    for event in sent[:10]:
        assert as_time(event["timestamp"]) == stored[event["transaction_id"]] == as_time(start)


def test_a_crash_then_an_edit_bills_no_line_twice(
    run_cli: RunCli, mock: Mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = [make_event("lago", index) for index in range(30)]
    source = write_jsonl(tmp_path / "events.jsonl", events)
    with recording(monkeypatch, crash_on=2):
        crashed = run_cli("ingest", "lago", str(source), "--batch-events", "10", "--max-in-flight", "1")
    assert crashed.code == 2
    no_restart_advice(crashed.out, crashed.err)

    write_jsonl(source, [make_event("lago", 99), *events])
    resumed = run_cli("ingest", "lago", str(source))

    assert resumed.code == 0, resumed.out + resumed.err
    no_restart_advice(resumed.out, resumed.err)
    keys = mock.keys("lago")
    assert len(keys) == len(set(keys)) == mock.stats("lago")["stored"] == 31


def test_stdin_without_a_state_refuses_lago_lines_without_a_timestamp(
    mock: Mock, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = write_jsonl(
        tmp_path / "in.jsonl", [lago_event(1), {k: v for k, v in lago_event(2).items() if k != "timestamp"}]
    ).read_bytes()

    code = main(["ingest", "lago", "-"], stdin=io.BytesIO(lines))

    out = capsys.readouterr().out
    assert code == 1
    assert mock.stats("lago")["stored"] == 1
    assert "--state" in out


@pytest.mark.parametrize("provider", PROVIDERS)
def test_running_the_same_command_again_resends_failed_lines_only(
    run_cli: RunCli, mock: Mock, tmp_path: Path, provider: str
) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [make_event(provider, index) for index in range(40)])
    mock.faults(rate_503=1.0, retry_after=0)
    failed = run_cli("ingest", provider, str(source), "--max-attempts", "1", "--batch-events", "10")
    assert failed.code == 2
    mock.faults(rate_503=0.0)
    assert run_cli("ingest", provider, str(source), "--batch-events", "10").code == 0
    requests = mock.stats(provider)["requests"]

    again = run_cli("ingest", provider, str(source), "--report", "report.json")

    assert again.code == 0
    assert report_of(Path("report.json"))["counts"]["delivered"] == 40
    assert mock.stats(provider)["stored"] == 40
    assert mock.stats(provider)["requests"] == requests


def test_occurrences_counted_on_disk_give_the_same_keys(
    run_cli: RunCli, mock: Mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past 200,000 distinct lines the counts move to disk; a cap of 5 takes that path with 2,100 lines.

    Lines are read in blocks of 2,000: the third copies of lines 600-699 fall in the second block.
    """
    lines = [togai_event(index % 700) for index in range(2100)]  # each line three times
    source = write_jsonl(tmp_path / "events.jsonl", lines)
    with recording(monkeypatch) as in_memory:
        assert run_cli("ingest", "togai", str(source), "--state", "in-memory.sqlite").code == 0
    assert len(set(mock.keys("togai"))) == 2100

    monkeypatch.setattr(_lines.Occurrences, "MEMORY_DIGESTS", 5)
    with recording(monkeypatch) as on_disk:
        assert run_cli("ingest", "togai", str(source), "--state", "on-disk.sqlite").code == 0

    assert sorted(event["id"] for event in on_disk) == sorted(event["id"] for event in in_memory)
    assert mock.stats("togai")["stored"] == 2100


def test_a_state_of_the_previous_version_stops_the_run(run_cli: RunCli, mock: Mock, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [togai_event(index) for index in range(5)])
    (tmp_path / "events.jsonl.togai.state.json").write_text('{"version": 1, "finished": true}')

    result = run_cli("ingest", "togai", str(source))

    assert result.code == 64
    assert "billed twice" in result.err
    assert mock.stats("togai")["requests"] == 0


def test_lagos_clickhouse_store_bills_each_line_without_a_timestamp_once(
    run_cli: RunCli, mock: Mock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after a send, a resume an hour later, then lines appended and everything sent again.

    The ClickHouse store accepts every copy and deduplicates by (subscription, code, transaction_id,
    timestamp) when usage is read: ``stored`` is what it would bill, ``arrivals`` every copy it took.
    """
    mock.lago_store("clickhouse")
    start = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC).timestamp()
    events = [{k: v for k, v in lago_event(index).items() if k != "timestamp"} for index in range(60)]
    source = write_jsonl(tmp_path / "events.jsonl", events)
    options = ("--batch-events", "10", "--max-in-flight", "1")
    at(monkeypatch, start)
    with recording(monkeypatch, crash_on=3):
        assert run_cli("ingest", "lago", str(source), *options).code == 2
    at(monkeypatch, start + HOUR)
    assert run_cli("ingest", "lago", str(source), *options).code == 0
    extra = [{k: v for k, v in lago_event(100 + i).items() if k != "timestamp"} for i in range(5)]
    write_jsonl(source, events + extra)
    at(monkeypatch, start + 2 * HOUR)

    again = run_cli("ingest", "lago", str(source), "--restart")

    assert again.code == 0, again.out + again.err
    stats = mock.stats("lago")
    assert stats["arrivals"] == 30 + 40 + 65  # 3 batches, then 4 (one of them again), then all 65
    assert stats["stored"] == 65
