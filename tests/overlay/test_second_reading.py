"""Defects found by a second reading of the outcome, deadline and pacing rules; each test failed before its fix."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from billing_events import Lago, OutcomeStatus, RetryPolicy, Togai, partial_report

from .scripted import Scripted, accepted, lago_422, lago_event, lago_ok, togai_event


def togai(server: Scripted, retry: RetryPolicy, **options: object) -> Togai:
    return Togai("t", base_url="http://togai.local", transport=server.transport(), retry=retry, **options)  # type: ignore[arg-type]


def lago(server: Scripted, retry: RetryPolicy, **options: object) -> Lago:
    return Lago(
        "t", base_url="http://lago.local/api/v1", transport=server.transport(), retry=retry, **options
    )  # type: ignore[arg-type]


def test_a_refusal_after_an_attempt_that_may_have_stored_ends_unknown(fast_retry: RetryPolicy) -> None:
    """A token rotated between attempts: the 401 proves nothing about the first, timed-out attempt."""
    server = Scripted(
        httpx.ReadTimeout("no answer"), default=httpx.Response(401, json={"message": "Unauthorized"})
    )
    outcome = togai(server, fast_retry).send([togai_event(1)]).outcomes[0]
    assert outcome.status is OutcomeStatus.UNKNOWN
    assert "earlier attempt may have been stored" in (outcome.reason or "")
    first_try = togai(Scripted(default=httpx.Response(401, json={"message": "no"})), fast_retry)
    assert first_try.send([togai_event(1)]).outcomes[0].status is OutcomeStatus.FAILED


def test_ctrl_c_keeps_the_answers_already_received(fast_retry: RetryPolicy) -> None:
    """A 422 rejected event 0; Ctrl-C came while the rest was re-sent: event 0 stays rejected."""

    def interrupt(request: httpx.Request) -> httpx.Response:
        raise KeyboardInterrupt

    server = Scripted(lago_422({"0": {"code": ["value_is_invalid"]}}), interrupt)
    with pytest.raises(KeyboardInterrupt) as caught:
        lago(server, fast_retry).send([lago_event(n) for n in range(3)])
    report = partial_report(caught.value)
    assert report is not None
    assert [o.status for o in report] == [
        OutcomeStatus.REJECTED,
        OutcomeStatus.UNKNOWN,
        OutcomeStatus.UNKNOWN,
    ]
    assert report.outcomes[0].reason == "code: value_is_invalid"
    assert [e["transaction_id"] for e in report.to_resend()] == ["txn-1", "txn-2"]


def test_a_deadline_of_zero_keeps_the_retries() -> None:
    server = Scripted(httpx.Response(503), default=accepted)
    policy = RetryPolicy(max_attempts=3, deadline=0, initial_delay=0.001, max_delay=0.001)
    report = togai(server, policy).send([togai_event(1)])
    assert report.ok
    assert len(server.requests) == 2


def test_waiting_for_rate_budget_stays_within_the_call_deadline(fast_retry: RetryPolicy) -> None:
    """One request per 20 s, a call deadline of 1 s: a batch past the burst does not wait 20 s for its slot."""
    server = Scripted(default=accepted)
    policy = RetryPolicy(max_attempts=1, deadline=1.0)
    client = togai(server, policy, timeout=30, max_requests_per_second=0.05, max_batch_events=1)
    started = time.monotonic()
    report = client.send([togai_event(n) for n in range(4)])
    assert time.monotonic() - started < 10  # a bound, not a timing: before the fix it slept 20 s a batch
    statuses = [o.status for o in report]
    assert statuses[0] is OutcomeStatus.DELIVERED
    assert statuses[-1] is OutcomeStatus.FAILED  # never sent: no slot within the deadline
    assert len(server.requests) == statuses.count(OutcomeStatus.DELIVERED)


def test_a_locked_shared_budget_paces_locally_instead_of_failing(
    fast_retry: RetryPolicy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "budget.db"
    server = Scripted(default=lago_ok)
    client = lago(
        server, fast_retry, timeout=0.5, max_requests_per_second=50, rate_budget=f"sqlite:///{path}?key=k"
    )
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process holds the budget's lock
    try:
        with caplog.at_level(logging.WARNING, logger="billing_events"):
            report = client.send([lago_event(1)])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert report.ok
    assert any("pacing locally" in record.getMessage() for record in caplog.records)


def test_a_huge_key_does_not_make_a_huge_log_line(
    fast_retry: RetryPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    server = Scripted(default=httpx.ConnectError("refused"))
    event = lago_event(1, transaction_id="k" * 500_000)
    with caplog.at_level(logging.DEBUG, logger="billing_events"):
        lago(server, fast_retry).send([event])
    assert caplog.records
    assert max(len(record.getMessage()) for record in caplog.records) < 2_000
    assert max(len(str(getattr(record, "key", ""))) for record in caplog.records) < 500
