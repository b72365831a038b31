"""Review (second reading): the spool's unreadable intake, the async loop's end, the answer caps.

Each xfail test asserts what the README promises and fails today for the stated reason; the others
pin what holds. In-process spools and ``httpx.MockTransport``; no sleeps, no network.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from billing_events import AsyncLago, AsyncTogai, Lago, OutcomeStatus, RetryPolicy, Togai

from .scripted import Scripted, lago_event, togai_event
from .spool_support import drained_ids, killed, togai_spool, unreadable_intakes

# -- the spool: an intake that cannot be read, then can ------------------------------------------------


def test_a_damaged_file_whose_intake_could_not_be_read_gives_each_event_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: a damaged file keeps every event it can still read; an intake that cannot be read is kept
    and read again at the next scan. Its events already in SQLite (salvaged at the first scan) are in
    the intake too: the second read must not bring them in again."""
    dead = togai_spool(tmp_path)
    for number in range(400):
        dead.offer(
            b'{"id":"ev-%d","event_name":"e","account_id":"a","event_timestamp":"2024-01-01T00:00:00Z"}'
            % number
        )
    with dead._db_lock:
        dead._move_now()  # in SQLite, and still in the intake (its only segment stays)
    killed(dead)
    [left] = tmp_path.glob("*.spool")
    with left.open("r+b") as file:  # then the SQLite part was damaged: only its first part reads
        file.truncate(left.stat().st_size * 2 // 3)

    with monkeypatch.context() as patch:
        unreadable_intakes(patch)
        adopter = togai_spool(tmp_path)  # salvages what SQLite still holds; the intake waits
    try:
        salvaged = adopter.recovered
        assert 0 < salvaged < 400
        adopter.adopt()  # the intake reads again: the rest comes in
        ids = drained_ids(adopter)
        assert len(ids) == len(set(ids)), f"{len(ids) - len(set(ids))} events adopted twice"
        assert set(ids) == {f"ev-{n}" for n in range(400)}
    finally:
        adopter.close()


def test_a_damaged_file_loses_no_event_and_sends_delivered_ones_again_only_under_their_keys(
    tmp_path: Path,
) -> None:
    """Events moved into SQLite and then delivered are deleted there, yet their records stay in the
    intake's last segment. With the SQLite part damaged, nothing tells them from events it lost: the
    salvage keeps every intake record (README, "Damage"), so delivered ones may be sent again, each once
    and under its own key, which the provider answers as a duplicate."""
    dead = togai_spool(tmp_path)
    for number in range(400):
        dead.offer(
            b'{"id":"ev-%d","event_name":"e","account_id":"a","event_timestamp":"2024-01-01T00:00:00Z"}'
            % number
        )
    with dead._db_lock:
        dead._move_now()
    batch = dead.take_batch()
    dead.settle(batch[:200], [])  # delivered: deleted from SQLite with their outcome
    delivered = {orjson.loads(pending.payload)["id"] for pending in batch[:200]}
    killed(dead)
    [left] = tmp_path.glob("*.spool")
    with left.open("r+b") as file:
        file.truncate(left.stat().st_size * 2 // 3)
    adopter = togai_spool(tmp_path)
    try:
        adopted = drained_ids(adopter)
        assert len(adopted) == len(set(adopted))
        assert {f"ev-{n}" for n in range(400)} - delivered <= set(adopted)  # no undelivered event lost
        assert set(adopted) <= {f"ev-{n}" for n in range(400)}
    finally:
        adopter.close()


# -- no request passes max_batch_bytes, whatever path it takes ------------------------------------------

LIMIT = 3_000
PROXY = 1_400  # a proxy's body limit below ours: 413, then halving


def proxied(provider: str) -> Scripted:
    def answer(request: httpx.Request) -> httpx.Response:
        if len(request.content) > PROXY:
            return httpx.Response(413, text="Request Entity Too Large")
        if provider == "lago":
            return httpx.Response(200, json={"events": orjson.loads(request.content)["events"]})
        return httpx.Response(202, json={"success": True})

    return Scripted(default=answer)


def escaped_events(provider: str, count: int) -> list[dict[str, Any]]:
    values = ["\x01" * 20, "é" * 40, "\U0001f600" * 25, '"\\' * 30, "<>&" * 20, "a" * 7]
    if provider == "togai":
        return [
            togai_event(n, id=f"k-{n}", dimensions={"v": values[n % len(values)] * (1 + n % 3)})
            for n in range(count)
        ]
    return [lago_event(n, properties={"v": values[n % len(values)] * (1 + n % 3)}) for n in range(count)]


def make(provider: str, asynchronous: bool, server: Scripted, retry: RetryPolicy) -> Any:
    kind = {
        ("togai", False): Togai,
        ("togai", True): AsyncTogai,
        ("lago", False): Lago,
        ("lago", True): AsyncLago,
    }
    url = "http://togai.local" if provider == "togai" else "http://lago.local/api/v1"
    return kind[provider, asynchronous](
        "t", base_url=url, transport=httpx.MockTransport(server), retry=retry, max_batch_bytes=LIMIT
    )


@pytest.mark.parametrize("provider", ["togai", "lago"])
@pytest.mark.parametrize("path", ["send", "async-send", "background", "spool", "async-background"])
def test_no_request_passes_max_batch_bytes_with_escapes_and_after_halving(
    provider: str, path: str, tmp_path: Path, fast_retry: RetryPolicy
) -> None:
    """Holds: sync and async send, the background queue, the spool's take_batch, the asyncio sender."""
    server = proxied(provider)
    events = escaped_events(provider, 60)
    if path == "send":
        with make(provider, False, server, fast_retry) as api:
            statuses = api.send(events).statuses
    elif path == "async-send":

        async def run() -> Any:
            async with make(provider, True, server, fast_retry) as api:
                return (await api.send(events)).statuses

        statuses = asyncio.run(run())
    elif path in ("background", "spool"):
        options: dict[str, Any] = {"flush_interval": 3600, "flush_at_events": 10_000}
        if path == "spool":
            options["spool"] = tmp_path
        with make(provider, False, server, fast_retry) as api:
            sender = api.background(**options)
            for item in events:
                sender.track(item)
            assert sender.flush(30)
            stats = sender.close(30)
        statuses = (OutcomeStatus.DELIVERED,) * stats.delivered
    else:

        async def run_background() -> Any:
            async with make(provider, True, server, fast_retry) as api:
                sender = api.background(flush_interval=3600, flush_at_events=10_000)
                for item in events:
                    sender.track(item)
                assert await sender.flush(30)
                return await sender.close(30)

        stats = asyncio.run(run_background())
        statuses = (OutcomeStatus.DELIVERED,) * stats.delivered
    assert statuses == (OutcomeStatus.DELIVERED,) * 60
    assert any(len(request.content) > PROXY for request in server.requests)  # halving happened
    assert max(len(request.content) for request in server.requests) <= LIMIT


@pytest.mark.parametrize("spooled", [False, True])
def test_a_queued_batch_exactly_at_max_batch_bytes_is_one_request(
    spooled: bool, tmp_path: Path, fast_retry: RetryPolicy
) -> None:
    """Holds: the background queue's and the spool's take_batch count commas as the body has them."""
    server = Scripted(default=httpx.Response(202, json={"success": True}))
    events = [togai_event(n, id=f"k-{n}") for n in range(3)]
    exact = len(b'{"events":[]}') + sum(len(orjson.dumps(item)) for item in events) + 2
    options: dict[str, Any] = {"flush_interval": 3600, "flush_at_events": 10_000}
    if spooled:
        options["spool"] = tmp_path
    with Togai(
        "t",
        base_url="http://togai.local",
        transport=httpx.MockTransport(server),
        retry=fast_retry,
        max_batch_bytes=exact,
    ) as api:
        sender = api.background(**options)
        for item in events:
            sender.track(item)
        assert sender.flush(30)
        sender.close(30)
    assert [len(request.content) for request in server.requests] == [exact]


# -- find_event's cap against what Lago's show answers --------------------------------------------------


def test_find_event_reads_the_stored_form_of_an_event_it_sent(fast_retry: RetryPolicy) -> None:
    """lago-api's EventsController#show renders ``Event.find_by(...)``: properties read back from the
    jsonb column, where Postgres prints a number without its exponent (1e300: 301 digits). An event of
    325 KB, far below the 1 MiB a request may hold, comes back as 6.5 MB."""
    properties = {f"p{n}": 1e300 for n in range(21_000)}
    event = {
        "transaction_id": "t-1",
        "external_subscription_id": "sub-1",
        "code": "c",
        "timestamp": 1714558530,
        "properties": properties,
    }
    digits = "1" + "0" * 300
    stored = (
        '{"event":{"lago_id":"0f0f0f0f-0000-4000-8000-000000000000","transaction_id":"t-1",'
        '"lago_customer_id":null,"external_customer_id":null,"code":"c",'
        '"timestamp":"2024-05-01T10:15:30.000Z","properties":{'
        + ",".join(f'"p{n}":{digits}' for n in range(21_000))
        + '},"lago_subscription_id":null,"external_subscription_id":"sub-1","created_at":"2024-05-01T10:15:30Z"}}'
    ).encode()
    sent: list[int] = []

    def server(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            sent.append(len(request.content))
            body = orjson.loads(request.content)
            return httpx.Response(200, json={"events": body["events"]})
        return httpx.Response(200, content=stored, headers={"content-type": "application/json"})

    with Lago(
        "t", base_url="http://lago.local/api/v1", transport=httpx.MockTransport(server), retry=fast_retry
    ) as api:
        assert api.send([event]).statuses == (OutcomeStatus.DELIVERED,)
        assert sent[0] < 1_048_576 // 3
        found = api.find_event("t-1")
    assert found.transaction_id == "t-1"
