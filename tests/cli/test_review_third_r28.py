"""Third reading of round 28 (CSV spaces and field size, numbers beyond a double, remembered unknown keys,
the budget's stale bound). The first four are defects it found (each failed before its fix); the others pin what holds."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import httpx
import orjson
import pytest

from billing_events import OutcomeStatus, RetryPolicy, Togai
from billing_events.budgets import MemoryBudget
from billing_events.deadletter import remember_unknown
from cli.conftest import Mock
from cli.support import RunCli, report_of

LAGO_OK = (
    '{"transaction_id":"%s","external_subscription_id":"sub_1","code":"api_calls","timestamp":1714560000}'
)


def problems(report: Path) -> list[tuple[int, str, str]]:
    return [(p["line"], p["status"], p["reason"]) for p in report_of(report)["problems"]]


# ---- defects ---------------------------------------------------------------------------------------


def test_an_integer_beyond_a_doubles_range_is_named_by_field_as_beyond_64_bits(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    """README "Input formats": an integer outside the 64-bit range makes its line invalid "with the field
    named". orjson reads 10**400 as infinity and refuses the line; only a float is looked for then."""
    source = tmp_path / "usage.jsonl"
    bad = (
        '{"transaction_id":"b","external_subscription_id":"sub_1","code":"api_calls",'
        '"timestamp":1714560000,"properties":{"count":1' + "0" * 400 + "}}"
    )
    source.write_text("\n".join([LAGO_OK % "a", bad]) + "\n")

    result = run_cli("ingest", "lago", str(source), "--report", "report.json", "--no-progress")

    assert result.code == 1
    assert mock.keys("lago") == ["a"]
    [(line, status, reason)] = problems(Path("report.json"))
    assert (line, status) == (2, "invalid")
    assert "not valid JSON" not in reason, reason  # today: "not valid JSON: number is infinity ..."
    assert "properties.count" in reason and "64 bits" in reason, reason


def test_a_csv_ingest_leaves_the_process_csv_field_size_limit_as_it_found_it(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    """csv.field_size_limit is one setting for the whole process: an ingest run in-process (main()) leaves
    every other CSV reader of the program, on any thread, accepting fields of the provider's request size."""
    before = csv.field_size_limit()
    source = tmp_path / "usage.csv"
    source.write_text(
        "transaction_id,external_subscription_id,code,timestamp\nt1,sub_1,api_calls,1714560000\n"
    )
    try:
        assert run_cli("ingest", "lago", str(source), "--no-progress").code == 0
        after = csv.field_size_limit()
    finally:
        csv.field_size_limit(before)
    assert after == before  # today: raised to the provider's batch size, for good


def _letter(key: str, at: object, days_ago: float = 1) -> dict[str, object]:
    event = {
        "id": key,
        "schemaName": "api_calls",
        "timestamp": "2024-05-01T10:15:30Z",
        "accountId": "acme",
        "attributes": [{"name": "calls", "value": "1"}],
    }
    letter = {"provider": "togai", "key": key, "status": "unknown", "reason": "lost answer", "event": event}
    letter["at"] = (
        (dt.datetime.now(dt.UTC) - dt.timedelta(days=days_ago)).isoformat(timespec="milliseconds")
        if at == "recent"
        else at
    )
    return letter


@pytest.mark.parametrize("odd_at", [None, 1714560000])
def test_a_replay_of_a_key_twice_with_a_letter_time_that_is_not_text_does_not_crash(
    tmp_path: Path, odd_at: object
) -> None:
    """read_dead_letters keeps a letter whose "at" is null or a number (edited by hand); the second letter
    of the same key then reaches deadletter._moment, which only catches ValueError."""
    letters = tmp_path / "dead.jsonl"
    letters.write_bytes(
        orjson.dumps(_letter("evt-1", "recent")) + b"\n" + orjson.dumps(_letter("evt-1", odd_at)) + b"\n"
    )
    sent: list[httpx.Request] = []

    def accept(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"events": []})

    with Togai(
        "t",
        base_url="http://togai.local",
        transport=httpx.MockTransport(accept),
        retry=RetryPolicy(max_attempts=1),
    ) as client:
        report = client.replay(letters)  # today: TypeError: fromisoformat: argument must be str
    assert len(report.outcomes) == 2
    assert all(outcome.status is not OutcomeStatus.FAILED for outcome in report.outcomes)


def test_a_request_with_a_short_wait_does_not_take_a_slot_booked_far_ahead_as_stale() -> None:
    """README "Rate budgets": a stored slot is stale only past 300 s plus one interval, the burst and "the
    longest wait a request may have". Slots booked 400 s ahead by requests that may wait 600 s (a long
    timeout, or another process of the same budget) are not stale; a request whose deadline leaves it
    10 s takes them as stale, goes at once and moves the budget back to now: the pace is broken."""
    budget = MemoryBudget()
    for _ in range(400):  # one request a second, each allowed to wait 600 s
        assert budget.reserve("ingest", 1.0, 1.0, 600.0) is not None
    short = budget.reserve("ingest", 1.0, 1.0, 10.0)
    assert short is None  # today: 0.0, a slot at once, and the TAT starts over from now
    after = budget.reserve("ingest", 1.0, 1.0, 600.0)
    assert after is not None and after.wait > 390


# ---- what holds ------------------------------------------------------------------------------------


def test_csv_spaces_after_commas_go_but_quoted_spaces_and_a_spaced_first_header_stay_right(
    run_cli: RunCli, mock: Mock, tmp_path: Path
) -> None:
    source = tmp_path / "usage.csv"
    source.write_text(
        " transaction_id, external_subscription_id, code, timestamp, prop.region, prop.note\n"
        't1, sub_1, api_calls, 1714560000, " eu, west", "a, b"\n'
        "t2, sub_1, api_calls, 1714560000,   , x\n"
    )

    result = run_cli("ingest", "lago", str(source), "--report", "report.json", "--no-progress")

    assert result.code == 0, result.out + result.err
    stored = {event["transaction_id"]: event for event in mock.events("lago")}
    assert stored["t1"]["properties"] == {"region": " eu, west", "note": "a, b"}
    assert stored["t2"]["properties"] == {"note": "x"}  # a cell of spaces is an empty cell


def test_remember_unknown_keeps_the_earliest_readable_moment() -> None:
    earlier: dict[str, str] = {}
    remember_unknown(earlier, "k", "2026-03-01T00:00:00+00:00")
    remember_unknown(earlier, "k", "garbage")
    remember_unknown(earlier, "k", "2026-01-01T00:00:00")  # no zone: never wins
    remember_unknown(earlier, "k", "9999-12-31T23:59:59-23:59")
    assert earlier == {"k": "2026-03-01T00:00:00+00:00"}
    remember_unknown(earlier, "k", "2026-02-28T23:00:00-02:00")  # 1 h later in UTC
    assert earlier == {"k": "2026-03-01T00:00:00+00:00"}
    remember_unknown(earlier, "k", "2026-02-28T23:00:00+00:00")
    assert earlier == {"k": "2026-02-28T23:00:00+00:00"}
