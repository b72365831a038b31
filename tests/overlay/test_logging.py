"""Logging fit for production: one hierarchy, silent by default, no line per event, structured fields."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from billing_events import Lago, OutcomeStatus, RetryPolicy, Togai

from .scripted import Scripted, accepted, lago_event, lago_ok, togai_event

TOKEN = "test-token-123"
FAST = RetryPolicy(max_attempts=3, deadline=10, initial_delay=0.001, max_delay=0.01, max_retry_after=0.01)


def refused(request: httpx.Request) -> httpx.Response:
    return httpx.Response(401, json={"message": "bad token"}, headers={"x-request-id": "req-401"})


def rate_limited(request: httpx.Request) -> httpx.Response:
    return httpx.Response(429, json={"message": "slow down"}, headers={"x-request-id": "req-429"})


def ours(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name.startswith("billing_events")]


def test_nothing_is_printed_by_default() -> None:
    # A program that configures no logging and hits every warning path: rejections, refusals, bad lines.
    program = """
import httpx, pathlib, tempfile
from billing_events import Togai, read_dead_letters
refuse = lambda request: httpx.Response(401, json={"message": "no"})
with Togai("test-token-123", base_url="http://togai.test", transport=httpx.MockTransport(refuse)) as togai:
    good = {"schemaName": "s", "timestamp": "2024-05-01T10:15:30Z", "accountId": "a",
            "attributes": [], "dimensions": {}}
    report = togai.send([good, {**good, "schemaName": ""}])
    sender = togai.background()
    sender.track({**good, "schemaName": ""})
    sender.track(good)
    sender.close(10)
path = pathlib.Path(tempfile.mkdtemp()) / "dead.jsonl"
path.write_text("not json\\n")
list(read_dead_letters(path))
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")


def test_the_package_logger_has_a_null_handler_and_no_level() -> None:
    package = logging.getLogger("billing_events")
    assert any(isinstance(handler, logging.NullHandler) for handler in package.handlers)
    assert package.level == logging.NOTSET  # the application's configuration decides


def test_an_undelivered_event_is_a_warning_with_structured_fields(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="billing_events")
    script = Scripted(default=refused)
    with Togai(TOKEN, base_url="http://togai.test", transport=script.transport()) as togai:
        report = togai.send([togai_event(1, id="evt-1"), togai_event(2, id="evt-2")])
    assert report.counts[OutcomeStatus.FAILED] == 2
    [record] = ours(caplog)
    assert record.name == "billing_events.outcomes"
    assert record.levelno == logging.WARNING
    fields = {name: getattr(record, name) for name in ("provider", "key", "status", "attempts", "request_id")}
    assert fields == {
        "provider": "togai",
        "key": "evt-1",
        "status": "failed",
        "attempts": 1,
        "request_id": "req-401",
    }
    assert record.http_status == 401  # type: ignore[attr-defined]
    assert record.events == 2  # type: ignore[attr-defined]
    assert record.counts == {"failed": 2}  # type: ignore[attr-defined]
    assert TOKEN not in record.getMessage()


def test_debug_gives_one_record_per_undelivered_event_and_per_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="billing_events")
    script = Scripted(rate_limited, default=refused)
    with Togai(TOKEN, base_url="http://togai.test", transport=script.transport(), retry=FAST) as togai:
        togai.send([togai_event(1, id="evt-1"), togai_event(2, id="evt-2")])
    records = ours(caplog)
    requests = [
        record for record in records if record.name == "billing_events.delivery" and record.levelno == 10
    ]
    assert [(r.http_status, r.request_id, r.events) for r in requests] == [  # type: ignore[attr-defined]
        (429, "req-429", 2),
        (401, "req-401", 2),
    ]
    [retry] = [r for r in records if r.name == "billing_events.delivery" and r.levelno == logging.INFO]
    assert retry.name == "billing_events.delivery"
    # Logged once the events were sent again: the second request carried them, after the 429 of the first.
    assert (retry.provider, retry.events, retry.attempts, retry.http_status, retry.request_id) == (  # type: ignore[attr-defined]
        "togai",
        2,
        2,
        429,
        "req-429",
    )
    per_event = [r for r in records if r.name == "billing_events.outcomes" and r.levelno == logging.DEBUG]
    assert sorted((r.key, r.status, r.attempts, r.request_id) for r in per_event) == [  # type: ignore[attr-defined]
        ("evt-1", "failed", 2, "req-401"),
        ("evt-2", "failed", 2, "req-401"),
    ]


def test_track_logs_nothing_per_event(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="billing_events")
    script = Scripted(default=lago_ok)
    with Lago(TOKEN, base_url="http://lago.test/api/v1", transport=script.transport()) as lago:
        sender = lago.background(flush_interval=600)
        for n in range(1000):
            sender.track(lago_event(n))
        assert sender.flush(30)
        stats = sender.close(10)
    assert stats.delivered == 1000
    records = ours(caplog)
    # One DEBUG record per request, one when the sender and one when the client closes. Requests
    # carry up to 100 events: at least 10, more when the worker drains a queue the caller is still
    # filling (a slow caller's thread), never one per event.
    assert 10 <= len(script.requests) < 100
    assert len(records) == len(script.requests) + 2
    assert all(record.name.startswith("billing_events.") for record in records)


def test_a_stream_of_bad_events_gives_one_warning_not_one_per_event(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="billing_events")
    script = Scripted(default=accepted)
    with Togai(TOKEN, base_url="http://togai.test", transport=script.transport()) as togai:
        sender = togai.background()
        for n in range(200):
            sender.track(togai_event(n, schemaName=""))
        stats = sender.close(10)
    assert stats.rejected == 200
    # One for the first batch; the close says how many the 10 s throttle held back since.
    warning, closing = ours(caplog)
    assert warning.status == "rejected"  # type: ignore[attr-defined]
    assert "schemaName" in warning.getMessage()
    assert closing.getMessage().startswith(f"togai: {200 - warning.events} more events not delivered")  # type: ignore[attr-defined]


def test_the_documented_json_formatter_carries_the_fields() -> None:
    # The README's example: the structured fields as JSON, one object per record.
    class JsonFormatter(logging.Formatter):
        FIELDS = ("provider", "key", "status", "attempts", "request_id", "http_status", "events")

        def format(self, record: logging.LogRecord) -> str:
            entry = {"level": record.levelname, "logger": record.name, "message": record.getMessage()}
            entry.update({name: getattr(record, name) for name in self.FIELDS if hasattr(record, name)})
            return json.dumps(entry)

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("billing_events")
    logger.addHandler(handler)
    try:
        script = Scripted(default=refused)
        with Togai(TOKEN, base_url="http://togai.test", transport=script.transport()) as togai:
            togai.send([togai_event(1, id="evt-1")])
    finally:
        logger.removeHandler(handler)
    warning = json.loads(lines[0])
    assert warning["logger"] == "billing_events.outcomes"
    assert (warning["provider"], warning["key"], warning["status"], warning["request_id"]) == (
        "togai",
        "evt-1",
        "failed",
        "req-401",
    )


def test_the_command_line_logs_its_end_on_its_own_logger(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    from billing_events.cli import main

    source = tmp_path / "events.jsonl"
    source.write_text(json.dumps(togai_event(1)) + "\n")
    caplog.set_level(logging.INFO, logger="billing_events")
    assert main(["ingest", "togai", str(source), "--dry-run"]) == 0
    [record] = [record for record in ours(caplog) if record.name == "billing_events.cli"]
    assert (record.provider, record.command, record.exit_code) == ("togai", "ingest", 0)  # type: ignore[attr-defined]
