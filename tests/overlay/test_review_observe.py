"""Review: observability and configuration as a user meets them (stats, metrics, logs, options).

Each xfail(strict=True) test asserts what README promises and fails today because of the defect
its reason names; the plain tests pin down cases that hold.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from billing_events import (
    ConfigurationError,
    Lago,
    OutcomeStatus,
    RetryPolicy,
    SenderClosedError,
    Togai,
)
from billing_events.cli import main

from .scripted import Scripted, accepted, togai_event

TOKEN = "review-token"
NO_WAIT = RetryPolicy(max_attempts=3, initial_delay=0, max_delay=0, max_retry_after=0)


def metric_sum(reader: InMemoryMetricReader, name: str) -> int:
    total = 0
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    total += sum(point.value for point in metric.data.data_points)
    return total


# -- Stats and metrics against what went over the wire ---------------------------------------------


def test_retried_counts_only_events_that_were_sent_again(reader: InMemoryMetricReader) -> None:
    server = Scripted(default=httpx.Response(503, json={"message": "down"}))
    client = Togai(TOKEN, base_url="http://togai.test", transport=server.transport(), retry=NO_WAIT)
    report = client.send([togai_event(n) for n in range(4)])
    assert len(server.requests) == 3  # three attempts of the one batch of 4: two re-sends of 4 events
    assert report.counts[OutcomeStatus.UNKNOWN] == 4
    # README: "retried: events sent again after a wait" (Stats.retried and billing_events.events.retried)
    assert client.stats.retried == 8
    assert metric_sum(reader, "billing_events.events.retried") == 8


def test_no_retry_policy_counts_no_retries() -> None:
    server = Scripted(default=httpx.Response(503, json={"message": "down"}))
    once = RetryPolicy(max_attempts=1)
    client = Togai(TOKEN, base_url="http://togai.test", transport=server.transport(), retry=once)
    client.send([togai_event(n) for n in range(4)])
    assert len(server.requests) == 1
    assert client.stats.retried == 0


def test_retried_is_right_when_the_retry_succeeds() -> None:
    server = Scripted(httpx.Response(503, json={"message": "down"}), default=accepted)
    client = Togai(TOKEN, base_url="http://togai.test", transport=server.transport(), retry=NO_WAIT)
    assert client.send([togai_event(n) for n in range(4)]).ok
    assert len(server.requests) == 2
    assert client.stats.retried == 4


def test_stats_and_metrics_match_the_report_with_rejects_and_repeats(reader: InMemoryMetricReader) -> None:
    server = Scripted(default=accepted)
    client = Togai(TOKEN, base_url="http://togai.test", transport=server.transport())
    keyed = togai_event(1, id="evt-1")
    events: list[Any] = [keyed, dict(keyed), togai_event(2, schemaName=""), togai_event(3, id="evt-1")]
    report = client.send(events)
    stats = client.stats
    counts = {status.value: amount for status, amount in report.counts.items() if amount}
    assert counts == {"delivered": 1, "duplicate": 1, "rejected": 2}
    assert {name: getattr(stats, name) for name in counts} == counts
    assert stats.settled == len(report) == 4
    assert metric_sum(reader, "billing_events.events") == 4


def test_track_after_close_raises_and_leaves_the_counters_alone(tmp_path: Path) -> None:
    dead = tmp_path / "dead.jsonl"
    server = Scripted(default=accepted)
    client = Togai(TOKEN, base_url="http://togai.test", transport=server.transport(), dead_letter_path=dead)
    sender = client.background(flush_interval=0.01)
    sender.track(togai_event(1))
    closed = sender.close(10)
    with pytest.raises(SenderClosedError):
        sender.track(togai_event(2))  # holds today
    with pytest.raises(SenderClosedError):
        sender.track({"not": "an event"})  # README: close() "stops accepting events"
    assert sender.stats == closed  # the stats logged at close stay the final ones
    assert not dead.exists()


# -- Logging -----------------------------------------------------------------------------------------


def test_an_unwritable_dead_letter_file_does_not_flood_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="billing_events")
    server = Scripted(default=accepted)
    client = Togai(
        TOKEN,
        base_url="http://togai.test",
        transport=server.transport(),
        dead_letter_path=tmp_path / "no-such-dir" / "dead.jsonl",
    )
    report = client.send([togai_event(n, schemaName="") for n in range(20)])
    assert report.counts[OutcomeStatus.REJECTED] == 20
    assert client.dead_letter_file is not None and client.dead_letter_file.unwritten == 20  # holds
    errors = [
        r for r in caplog.records if r.name == "billing_events.deadletter" and r.levelno >= logging.ERROR
    ]
    # README: "No line per event ... a stream of bad events is not a flood of lines".
    assert len(errors) <= 1, f"{len(errors)} ERROR records for one send()"


# -- Configuration -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["ftp://lago.test", "   "])
def test_a_bad_base_url_variable_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("LAGO_API_URL", value)
    with pytest.raises(ConfigurationError) as caught:
        Lago(TOKEN)
    assert "LAGO_API_URL" in str(caught.value)


def test_a_bad_rate_budget_variable_is_named_by_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "usage.jsonl"
    source.write_text('{"schemaName": "api_calls", "timestamp": "2024-05-01T10:00:00Z", "accountId": "a"}\n')
    monkeypatch.setenv("TOGAI_API_TOKEN", TOKEN)
    monkeypatch.delenv("TOGAI_BASE_URL", raising=False)
    monkeypatch.setenv("BILLING_EVENTS_RATE_BUDGET", "memcached://cache.test:11211/?key=billing")
    monkeypatch.chdir(tmp_path)
    code = main(["ingest", "togai", str(source), "--no-progress", "--endpoint", "sandbox"])
    err = capsys.readouterr().err
    assert code == 64  # holds
    assert "BILLING_EVENTS_RATE_BUDGET" in err, err


@pytest.mark.parametrize("option", ["max_batch_events", "max_batch_bytes", "timeout", "connect_timeout"])
def test_a_boolean_is_not_a_number_of_events_or_seconds(option: str) -> None:
    with pytest.raises(ConfigurationError, match=option):
        Togai(TOKEN, **{option: True})


def test_the_token_variable_is_stripped_of_white_space(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOGAI_API_TOKEN", f"  {TOKEN}\n")
    server = Scripted(default=accepted)
    Togai(base_url="http://togai.test", transport=server.transport()).send([togai_event(1)])
    assert server.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_an_empty_base_url_variable_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOGAI_BASE_URL", "")
    assert Togai(TOKEN).config.base_url == "https://api.togai.com"
