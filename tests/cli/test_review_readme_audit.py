"""The README as a contract, second audit: quick start, outcomes, idempotency, Lago stamps, retries, logging,
dead-letter callbacks, the CLI's reports and exit codes, and the mock's own curl examples. Each test quotes the
README sentence it checks (README.md line numbers as of e78e25d); each xfail names a drift."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from billing_events import Lago, OutcomeStatus, RetryPolicy, Togai
from billing_events.mock import ProviderMock
from cli.conftest import Mock
from cli.support import RunCli, write_jsonl

FAST = RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.002, max_retry_after=0.01)

TOGAI_EVENT: dict[str, Any] = {
    "schemaName": "api_calls",
    "timestamp": "2024-05-01T10:15:30Z",
    "accountId": "acme-corp",
    "attributes": [{"name": "calls", "value": "1"}],
    "dimensions": {"region": "eu-west-1"},
}
BAD_TOGAI_EVENT: dict[str, Any] = {**TOGAI_EVENT, "attributes": [{"name": "calls", "value": "3,5"}]}
LAGO_EVENT: dict[str, Any] = {
    "external_subscription_id": "sub_acme_growth",
    "code": "api_calls",
    "properties": {"calls": 1},
}


class Records(logging.Handler):
    """Every record of the ``billing_events`` hierarchy, with the thread that emitted it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[tuple[int, logging.LogRecord]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append((threading.get_ident(), record))


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("billing_events")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def togai_mock() -> Iterator[ProviderMock]:
    with ProviderMock.create_in_process("togai") as mock:
        yield mock


# -- Quick start, Outcomes, Idempotency (these hold) -------------------------------------------------------


def test_quick_start_1200_togai_events_are_three_requests_all_delivered(togai_mock: ProviderMock) -> None:
    """README L72-73: ``togai.send([event] * 1200)  # 3 requests: 500 + 500 + 200``, and
    ``print(report.counts)  # {OutcomeStatus.DELIVERED: 1200, ...}``."""
    report = togai_mock.client.send([TOGAI_EVENT] * 1200)
    assert report.counts[OutcomeStatus.DELIVERED] == 1200 and report.ok
    assert togai_mock.stats()["requests"] == 3 and togai_mock.stats()["stored"] == 1200
    assert isinstance(report[0:2], tuple) and len(report.statuses) == 1200


def test_a_key_repeated_in_one_send_is_duplicate_or_rejected_naming_the_earlier_event() -> None:
    """README L234-238: the same key and content is ``duplicate``; different content is ``rejected`` with a
    reason that names the key and the earlier event; "Content is compared without the timestamp the overlay
    stamped". Each Lago request never carries one transaction_id twice (L239)."""
    bodies: list[list[str]] = []

    def echo(request: httpx.Request) -> httpx.Response:
        events = json.loads(request.content)["events"]
        bodies.append([event["transaction_id"] for event in events])
        return httpx.Response(200, json={"events": events})

    with Lago("t", base_url="http://lago.local", transport=httpx.MockTransport(echo), retry=FAST) as lago:
        first = {**LAGO_EVENT, "transaction_id": "txn-1"}  # no timestamp: stamped, twice
        other = {**first, "properties": {"calls": 2}}
        report = lago.send([first, first, other])
    assert report.statuses == (OutcomeStatus.DELIVERED, OutcomeStatus.DUPLICATE, OutcomeStatus.REJECTED)
    reason = report[2].reason or ""
    assert "'txn-1'" in reason and "event 0" in reason
    assert all(len(ids) == len(set(ids)) for ids in bodies) and sum(map(len, bodies)) == 1


def test_lago_keys_and_stamps_are_filled_in_and_given_timestamps_sent_as_they_are() -> None:
    """README L214 "a missing or null one is assigned"; L223 stamps "Unix seconds with milliseconds, as a
    numeric string" on an event with none or null; L226 "A timestamp you give is sent as it is"."""
    sent: list[dict[str, Any]] = []

    def echo(request: httpx.Request) -> httpx.Response:
        events = json.loads(request.content)["events"]
        sent.extend(events)
        return httpx.Response(200, json={"events": events})

    events = [
        {**LAGO_EVENT, "transaction_id": None, "timestamp": None},
        dict(LAGO_EVENT),
        {**LAGO_EVENT, "transaction_id": "given-int", "timestamp": 1714558530},
        {**LAGO_EVENT, "transaction_id": "given-str", "timestamp": "1714558530"},
    ]
    with Lago("t", base_url="http://lago.local", transport=httpx.MockTransport(echo), retry=FAST) as lago:
        report = lago.send(events)
    assert report.ok
    for outcome, wire in zip(report.outcomes[:2], sent[:2], strict=True):
        assert outcome.key and wire["transaction_id"] == outcome.key == outcome.event["transaction_id"]
        assert isinstance(wire["timestamp"], str) and re.fullmatch(r"\d{10}\.\d{3}", wire["timestamp"])
        assert outcome.event["timestamp"] == wire["timestamp"]
    assert [wire["timestamp"] for wire in sent[2:]] == [1714558530, "1714558530"]


@pytest.mark.parametrize(
    ("status", "attempts"), [(408, 3), (429, 3), (500, 3), (501, 1), (505, 1), (520, 3), (530, 3), (599, 3)]
)
def test_retried_statuses_are_as_documented(status: int, attempts: int) -> None:
    """README L255-256: "Retried: ... HTTP 408 and 429, and every 5xx except 501 and 505 (gateways' 520-530
    and 599 included)"."""
    calls: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(status, json={"message": "x"})

    with Togai(
        "t", base_url="http://togai.local", transport=httpx.MockTransport(answer), retry=FAST
    ) as togai:
        report = togai.send([{**TOGAI_EVENT, "id": "evt-1"}])
    assert len(calls) == attempts
    assert not report.ok


# -- Logging -------------------------------------------------------------------------------------------------


def test_the_401_warning_carries_the_fields_of_the_readme_json_example(records: Records) -> None:
    """README L839-841: {"level": "WARNING", "logger": "billing_events.outcomes", "message": "togai: 2 events
    not delivered (failed 2); first: evt-1 failed: ...", "provider": "togai", "key": "evt-1", "status":
    "failed", "attempts": 1, "request_id": "req-401", "http_status": 401, "events": 2}."""

    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"message": "Unauthorized"}, headers={"X-Request-Id": "req-401"})

    with Togai(
        "t", base_url="http://togai.local", transport=httpx.MockTransport(refuse), retry=FAST
    ) as togai:
        togai.send([{**TOGAI_EVENT, "id": "evt-1"}, {**TOGAI_EVENT, "id": "evt-2"}])
    warnings = [r for _, r in records.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    record = warnings[0]
    assert record.name == "billing_events.outcomes"
    assert record.getMessage().startswith("togai: 2 events not delivered (failed 2); first: evt-1 failed: ")
    fields = {name: getattr(record, name) for name in ("provider", "key", "status", "attempts")}
    assert fields == {"provider": "togai", "key": "evt-1", "status": "failed", "attempts": 1}
    assert (record.request_id, record.http_status, record.events) == ("req-401", 401, 2)  # type: ignore[attr-defined]


def test_track_logs_nothing_for_an_event_it_accepts(togai_mock: ProviderMock, records: Records) -> None:
    """README "No line per event on the hot path": `track()` logs nothing for an event it accepts; one it
    refuses is settled inside `track()`, and its records come from the caller's thread."""
    sender = togai_mock.client.background(flush_interval=60.0)
    try:
        caller = threading.get_ident()
        sender.track({**TOGAI_EVENT, "id": "evt-accepted"})
        accepted = [r.getMessage()[:80] for ident, r in records.records if ident == caller]
        sender.track(BAD_TOGAI_EVENT)
        refused = [r for ident, r in records.records if ident == caller]
    finally:
        sender.close(5)
    assert accepted == []
    assert any(record.levelname == "WARNING" and "rejected" in record.getMessage() for record in refused)


# -- Dead letters (library side) -------------------------------------------------------------------------------


def test_sender_callbacks_run_on_a_worker_thread(togai_mock: ProviderMock) -> None:
    """README "From a callback": `on_outcome` and `on_dead_letter` run on a worker thread, except for an event
    `track()` settles itself (rejected by the spec, dropped by a full queue): those run inside `track()`."""
    calls: list[tuple[str, str, int]] = []
    client = togai_mock.new_client(
        on_dead_letter=lambda o: calls.append(("dead_letter", o.status.value, threading.get_ident()))
    )
    sender = client.background(
        flush_interval=60.0,
        max_queue_events=1,
        on_full="drop",
        on_outcome=lambda o: calls.append(("outcome", o.status.value, threading.get_ident())),
    )
    caller = threading.get_ident()
    try:
        sender.track(BAD_TOGAI_EVENT)  # rejected by the spec check
        sender.track({**TOGAI_EVENT, "id": "evt-1"})  # queued
        sender.track({**TOGAI_EVENT, "id": "evt-2"})  # the queue holds 1: dropped
    finally:
        sender.close(5)
    undelivered = [(what, status) for what, status, _ in calls if status != "delivered"]
    assert sorted(undelivered) == sorted(
        [
            ("dead_letter", "rejected"),
            ("outcome", "rejected"),
            ("dead_letter", "dropped"),
            ("outcome", "dropped"),
        ]
    )
    on_caller = sorted((what, status) for what, status, ident in calls if ident == caller)
    assert on_caller == sorted(undelivered)
    delivered = [ident for _, status, ident in calls if status == "delivered"]
    assert delivered and caller not in delivered


# -- CLI: ingest, --report, --dry-run, exit codes ----------------------------------------------------------------


def test_cli_dry_run_prints_file_line_field_rule_and_reports_dry_run(
    mock: Mock, run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README L1007 (--dry-run: "print each problem as `FILE:LINE: field: rule`, send nothing; needs no token")
    and L1018 (--report with --dry-run: "the lines checked, the problem lines (counted as the run would:
    `invalid` or `rejected`) and the exit code, with `"dry_run": true`"); exit 1 (L1125)."""
    monkeypatch.delenv("TOGAI_API_TOKEN")
    source = write_jsonl(tmp_path / "usage.jsonl", [TOGAI_EVENT, BAD_TOGAI_EVENT, "not json"])
    result = run_cli("ingest", "togai", str(source), "--dry-run", "--report", str(tmp_path / "r.json"))
    assert result.code == 1
    assert f"{source}:2: event.attributes[0].value: must be a decimal number" in result.out
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["dry_run"] is True and report["records"] == 3 and report["exit_code"] == 1
    assert report["counts"] == {"invalid": 1, "rejected": 1}
    assert mock.stats("togai")["requests"] == 0


def test_cli_a_refused_token_exits_64_and_counts_the_batch_failed(
    mock: Mock, run_cli: RunCli, tmp_path: Path
) -> None:
    """README L1127: "Also a token the provider refuses (401/403): the run stops at once without marking
    anything settled ...; the refused batch counts as `failed` in the summary and the report"."""
    source = write_jsonl(tmp_path / "usage.jsonl", [{**LAGO_EVENT, "transaction_id": "k1", "timestamp": 1}])
    result = run_cli("ingest", "lago", str(source), "--token", "wrong", "--report", str(tmp_path / "r.json"))
    assert result.code == 64
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["exit_code"] == 64 and report["counts"]["failed"] == 1 and report["finished"] is False
    again = run_cli("ingest", "lago", str(source))  # the right token, from the environment: it resumes
    assert again.code == 0 and mock.keys("lago") == ["k1"]


def test_cli_keeps_the_first_200_characters_of_a_long_key(
    mock: Mock, run_cli: RunCli, tmp_path: Path
) -> None:
    """README L1095-1097: "Every reason, key and message the CLI prints or keeps is cut to 200 characters,
    with a count of what was cut"."""
    key = "K" * 5000
    source = write_jsonl(tmp_path / "usage.jsonl", [{**LAGO_EVENT, "transaction_id": key, "timestamp": "x"}])
    result = run_cli("ingest", "lago", str(source), "--report", str(tmp_path / "r.json"))
    assert result.code == 1
    (problem,) = json.loads((tmp_path / "r.json").read_text())["problems"]
    assert problem["status"] == "rejected"
    assert problem["key"] == "K" * 200 + "… (4,800 more characters)"


# -- The mock's curl examples (README "Mock server") -------------------------------------------------------------


def test_the_mock_curl_examples_answer_as_commented() -> None:
    """README L2020-2036: Togai 202 twice, stored once; a 207 that names no event unless togai_207_detail=true,
    then index 1; Lago's timestamp "1714558530.250" comes back as 2024-05-01T10:15:30.250Z; "order/42" read
    back as order%2F42; the same event again is 422 value_already_exist."""
    with (
        ProviderMock.create_in_process("togai") as mock,
        httpx.Client(
            transport=mock.transport(),
            base_url="http://mock",
            headers={"Authorization": f"Bearer {mock.token}"},
        ) as http,
    ):
        event = {**TOGAI_EVENT, "id": "evt-1"}
        assert [http.post("/togai/ingest", json={"event": event}).status_code for _ in range(2)] == [202, 202]
        batch = {
            "events": [
                {**TOGAI_EVENT, "id": "evt-2", "attributes": [], "dimensions": {}},
                {**TOGAI_EVENT, "id": "evt-3", "attributes": [{"name": "gb", "value": "3,75"}]},
            ]
        }
        plain = http.post("/togai/ingestBatch", json=batch)
        assert plain.status_code == 207 and "details" not in plain.json()
        mock.set_faults(togai_207_detail=True)
        batch["events"][0]["id"] = "evt-4"
        detailed = http.post("/togai/ingestBatch", json=batch).json()
        assert [item["index"] for item in detailed["details"]["rejectedEvents"]] == [1]
        assert mock.stored_keys() == {"evt-1", "evt-2", "evt-4"}

        lago_event = {
            "transaction_id": "order/42",
            "external_subscription_id": "sub_acme_growth",
            "code": "seats",
            "timestamp": "1714558530.250",
            "properties": {"seats": 3},
        }
        created = http.post("/lago/api/v1/events", json={"event": lago_event})
        assert created.status_code == 200
        assert created.json()["event"]["timestamp"] == "2024-05-01T10:15:30.250Z"
        read = http.get("/lago/api/v1/events/order%2F42")
        assert read.status_code == 200 and read.json()["event"]["transaction_id"] == "order/42"
        again = http.post("/lago/api/v1/events", json={"event": lago_event})
        assert again.status_code == 422
        assert again.json()["error_details"] == {"transaction_id": ["value_already_exist"]}
