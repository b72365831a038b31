"""Item 4: every attempt has a wall-clock bound, and the retry deadline bounds the whole call."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from cli.support import togai_event, write_jsonl

from billing_events import AsyncLago, AsyncTogai, Lago, NotFoundError, RetryPolicy, Togai
from billing_events.cli import main
from billing_events.errors import RequestTimeoutError
from hostile.conftest import TOKEN
from hostile.server import Answer, HostileServer

# A valid answer, one byte every half second: 100 s in all, each read well inside httpx's timeouts.
TRICKLE = Answer("trickle", interval=0.5)
POLICY = RetryPolicy(max_attempts=10, deadline=3.0, initial_delay=0.01, max_delay=0.05)
# The bound the call promises (the deadline), plus generous slack for a loaded machine.
BOUND = 3.0 + 4.0


def test_sync_send_ends_by_the_retry_deadline(hostile: HostileServer) -> None:
    hostile.answer(TRICKLE)
    with Togai(TOKEN, base_url=hostile.url, timeout=1.0, retry=POLICY) as client:
        started = time.monotonic()
        report = client.send([togai_event(i) for i in range(3)])
        elapsed = time.monotonic() - started
    assert elapsed < BOUND
    assert hostile.stored_count >= 3  # the server has the events: they must not be called delivered
    # The server may have them: unknown (a replay is safe), never delivered nor failed.
    assert [o.status.value for o in report] == ["unknown"] * 3
    assert all(isinstance(o.error, RequestTimeoutError) for o in report)


def test_each_attempt_ends_by_the_client_timeout(hostile: HostileServer) -> None:
    hostile.answer(TRICKLE)
    policy = RetryPolicy(max_attempts=2, deadline=60.0, initial_delay=0.01, max_delay=0.01)
    with Togai(TOKEN, base_url=hostile.url, timeout=1.0, retry=policy) as client:
        started = time.monotonic()
        client.send([togai_event(0)])
        elapsed = time.monotonic() - started
    assert hostile.requests == 2
    assert elapsed < 2 * 1.0 + 4.0


def test_the_deadline_cuts_the_attempt_in_flight(hostile: HostileServer) -> None:
    # A generous per-attempt timeout: only the call's deadline can end this attempt early.
    hostile.answer(TRICKLE)
    policy = RetryPolicy(max_attempts=3, deadline=2.0, initial_delay=0.01, max_delay=0.01)
    with Togai(TOKEN, base_url=hostile.url, timeout=30.0, retry=policy) as client:
        started = time.monotonic()
        [outcome] = client.send([togai_event(0)]).outcomes
        elapsed = time.monotonic() - started
    assert outcome.status.value == "unknown"
    assert hostile.stored_count == 1
    assert elapsed < 2.0 + 4.0


def test_async_send_ends_by_the_retry_deadline(hostile: HostileServer) -> None:
    hostile.answer(TRICKLE)

    async def run() -> float:
        async with AsyncTogai(TOKEN, base_url=hostile.url, timeout=1.0, retry=POLICY) as client:
            started = time.monotonic()
            report = await client.send([togai_event(i) for i in range(3)])
            assert [o.status.value for o in report] == ["unknown"] * 3
            return time.monotonic() - started

    assert asyncio.run(run()) < BOUND
    assert hostile.stored_count >= 3


def test_request_response_calls_end_by_the_retry_deadline(hostile: HostileServer) -> None:
    hostile.answer(Answer("trickle", status=404, interval=0.5, body=b'{"status":404,"error":"Not Found"}'))
    with Lago(TOKEN, base_url=hostile.url, timeout=1.0, retry=POLICY) as client:
        started = time.monotonic()
        with pytest.raises(RequestTimeoutError):
            client.find_event("tx-1")
        elapsed = time.monotonic() - started
    assert elapsed < BOUND
    # And a quick 404 still reads as one: the bounds do not get in the way of a normal answer.
    hostile.answer(
        Answer("error", status=404, body=b'{"status":404,"error":"Not Found","code":"event_not_found"}')
    )
    with Lago(TOKEN, base_url=hostile.url, timeout=1.0, retry=POLICY) as client, pytest.raises(NotFoundError):
        client.find_event("tx-1")


def test_async_request_response_calls_end_by_the_retry_deadline(hostile: HostileServer) -> None:
    hostile.answer(Answer("trickle", interval=0.5, body=b'{"fees":[]}' + b" " * 200))

    async def run() -> float:
        async with AsyncLago(TOKEN, base_url=hostile.url, timeout=1.0, retry=POLICY) as client:
            started = time.monotonic()
            with pytest.raises(RequestTimeoutError):
                await client.estimate_fees("api_calls", "sub_1")
            return time.monotonic() - started

    assert asyncio.run(run()) < BOUND


def test_cli_ingest_ends_by_the_retry_deadline(
    hostile: HostileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hostile.answer(TRICKLE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOGAI_API_TOKEN", TOKEN)
    source = write_jsonl(tmp_path / "events.jsonl", [togai_event(i) for i in range(5)])
    started = time.monotonic()
    code = main(
        ["ingest", "togai", str(source), "--base-url", hostile.url, "--timeout", "1", "--retry-deadline", "3"]
    )
    elapsed = time.monotonic() - started
    assert code != 0
    assert elapsed < BOUND
    assert hostile.stored_count >= 5
