"""Resuming: a run stopped by a crash, SIGTERM, SIGKILL or Ctrl-C continues where it stopped.

"Where it stopped" is observable at the mock: after the second run every line
is stored exactly once, and the second run sent only what the first had not
settled (plus at most the batches that were in flight, which the provider
deduplicates by key).
"""

from __future__ import annotations

import signal
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from billing_events import Report
from billing_events.cli._run import EventSender
from cli.conftest import TOKEN, Mock
from cli.support import (
    RunCli,
    make_event,
    report_of,
    start_ingest,
    wait_for_checkpoint,
    wrapped_sender,
    write_jsonl,
)

PROVIDERS = ["togai", "lago"]


class CrashingSender:
    """Passes batches to the real client until call ``crash_on``, which raises (after sending, if asked)."""

    def __init__(self, inner: EventSender, crash_on: int, *, send_first: bool) -> None:
        self._inner = inner
        self._crash_on = crash_on
        self._send_first = send_first
        self.calls = 0

    async def send(self, events: Iterable[Mapping[str, Any]]) -> Report:
        self.calls += 1
        if self.calls == self._crash_on:
            if self._send_first:
                await self._inner.send(events)
            raise RuntimeError("simulated crash")
        return await self._inner.send(events)


@contextmanager
def crash_on_call(monkeypatch: pytest.MonkeyPatch, call: int, *, send_first: bool) -> Iterator[None]:
    """While active, the CLI's client raises on its ``call``-th batch, as if the process had crashed."""
    with wrapped_sender(monkeypatch, lambda client: CrashingSender(client, call, send_first=send_first)):
        yield


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("send_first", [False, True], ids=["crash-before-send", "crash-after-send"])
def test_a_crashed_run_resumes_after_the_last_settled_batch(
    run_cli: RunCli,
    mock: Mock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    send_first: bool,
) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [make_event(provider, index) for index in range(95)])
    options = ("--batch-events", "10", "--max-in-flight", "1", "--report", "report.json")
    with crash_on_call(monkeypatch, 4, send_first=send_first):
        crashed = run_cli("ingest", provider, str(source), *options)

    assert crashed.code == 2
    assert "simulated crash" in crashed.err
    assert "Run the same command again to resume" in crashed.err
    assert report_of(Path("report.json"))["records"] == 30

    resumed = run_cli("ingest", provider, str(source), *options)

    assert resumed.code == 0, resumed.out + resumed.err
    report = report_of(Path("report.json"))
    assert report["records_settled_earlier"] == 30
    assert report["records_this_run"] == 65
    assert report["records"] == 95
    keys = mock.keys(provider)
    assert len(keys) == len(set(keys)) == 95
    # A batch sent just before the crash is sent again, and the provider knows it already.
    assert mock.stats(provider)["duplicates"] == (10 if send_first else 0)


def test_a_finished_file_is_not_sent_again(run_cli: RunCli, mock: Mock, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [make_event("togai", index) for index in range(20)])
    assert run_cli("ingest", "togai", str(source)).code == 0
    requests = mock.stats("togai")["requests"]

    again = run_cli("ingest", "togai", str(source))

    assert again.code == 0
    assert "nothing to send" in again.out
    assert mock.stats("togai")["requests"] == requests


def test_an_explicit_state_path_is_used(run_cli: RunCli, mock: Mock, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [make_event("togai", index) for index in range(5)])
    state = tmp_path / "elsewhere" / "progress.json"
    state.parent.mkdir()

    assert run_cli("ingest", "togai", str(source), "--state", str(state)).code == 0

    assert state.exists()
    assert not (tmp_path / "events.jsonl.togai.state.sqlite").exists()
    again = run_cli("ingest", "togai", str(source), "--state", str(state))
    assert "nothing to send" in again.out
    assert mock.stats("togai")["requests"] == 1


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_a_stopped_process_resumes_where_it_stopped(
    run_cli: RunCli, mock: Mock, tmp_path: Path, provider: str, stop: signal.Signals
) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [make_event(provider, index) for index in range(200)])
    mock.faults(latency_ms=100)
    process = start_ingest(mock, TOKEN, provider, source)

    wait_for_checkpoint(process)
    process.send_signal(stop)
    _, err = process.communicate(timeout=60)

    if stop is signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
    else:
        assert process.returncode == 128 + stop, err
        assert "Run the same command again to resume" in err
    stored_before = mock.stats(provider)["stored"]
    assert 0 < stored_before < 200

    mock.faults(latency_ms=0)
    resumed = run_cli("ingest", provider, str(source), "--report", "report.json")

    assert resumed.code == 0, resumed.out + resumed.err
    assert report_of(Path("report.json"))["records_this_run"] < 200
    keys = mock.keys(provider)
    assert len(keys) == len(set(keys)) == 200


def test_a_second_run_on_the_same_state_exits_64_and_names_the_first(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "events.jsonl", [make_event("lago", index) for index in range(200)])
    mock.faults(latency_ms=100)
    process = start_ingest(mock, TOKEN, "lago", source)
    try:
        wait_for_checkpoint(process)

        second = run_cli("ingest", "lago", str(source))

        assert second.code == 64
        assert f"pid {process.pid}" in second.err
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=60)
    mock.faults(latency_ms=0)
    assert run_cli("ingest", "lago", str(source)).code == 0
    keys = mock.keys("lago")
    assert len(keys) == len(set(keys)) == 200
