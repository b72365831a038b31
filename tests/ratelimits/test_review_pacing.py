"""Hostile review of README "Rate limits": paces, the shared budget, its store misbehaving, fork, bounds."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from overlay.scripted import Scripted, accepted, lago_ok, togai_event

from billing_events import AsyncTogai, ConfigurationError, Lago, OutcomeStatus, RetryPolicy, Stats, Togai
from billing_events.budgets import open_budget
from billing_events.cli._display import pace_note

ONE_TRY = RetryPolicy(max_attempts=1)
DELIVERED = OutcomeStatus.DELIVERED


# --- A stand-in Redis server: speaks enough RESP3 for redis-py, answers EVALSHA as the test says ---------


def _commands(buffer: bytearray) -> Iterator[list[bytes]]:
    """Complete RESP arrays of bulk strings taken off the front of ``buffer``."""
    while True:
        if not buffer.startswith(b"*"):
            return
        try:
            end = buffer.index(b"\r\n")
            count = int(buffer[1:end])
            position, parts = end + 2, []
            for _ in range(count):
                end = buffer.index(b"\r\n", position)
                size = int(buffer[position + 1 : end])
                parts.append(bytes(buffer[end + 2 : end + 2 + size]))
                position = end + 2 + size + 2
                if position > len(buffer):
                    return
        except ValueError:
            return
        del buffer[:position]
        yield parts


class FakeRedis:
    """Answers HELLO and the rest as a Redis would; EVALSHA with ``script_answer`` (bytes of RESP).

    ``trickle`` sends that answer one byte at a time, ``trickle`` seconds apart (on the server's thread);
    ``delay`` holds the whole answer back that long. ``answered`` is set once the answer has been sent.
    """

    def __init__(self, script_answer: bytes, *, trickle: float = 0.0, delay: float = 0.0) -> None:
        self.script_answer = script_answer
        self.trickle = trickle
        self.delay = delay
        self.answered = threading.Event()
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = bytearray()
        with conn:
            while not self.stop.is_set():
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buffer += data
                for command in _commands(buffer):
                    name = command[0].upper()
                    try:
                        if name == b"HELLO":
                            conn.sendall(b"%1\r\n$5\r\nproto\r\n:3\r\n")
                        elif name in (b"EVALSHA", b"EVAL"):
                            self._answer(conn)
                        else:
                            conn.sendall(b"+OK\r\n")
                    except OSError:
                        return

    def _answer(self, conn: socket.socket) -> None:
        if self.delay:
            self.stop.wait(self.delay)
        if self.trickle:
            for byte in self.script_answer:
                conn.sendall(bytes([byte]))
                self.stop.wait(self.trickle)
        else:
            conn.sendall(self.script_answer)
        self.answered.set()

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture
def fake_redis() -> Iterator[Callable[..., FakeRedis]]:
    made: list[FakeRedis] = []

    def make(answer: bytes, **options: float) -> FakeRedis:
        made.append(FakeRedis(answer, **options))
        return made[-1]

    yield make
    for server in made:
        server.close()


def _togai(server: Scripted, **options: Any) -> Togai:
    """A Togai client sending once to ``server``, with the pacing ``options`` of a test."""
    return Togai("t", transport=server.transport(), retry=ONE_TRY, **options)


def bulk(text: str) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(text), text.encode())


def booked(wait: str) -> bytes:
    """The budget script's answer for a slot: its wait and the TAT it stored (an array of two bulk strings)."""
    return b"*2\r\n" + bulk(wait) + bulk("1700000000.000000")


# --- Defects ----------------------------------------------------------------------------------------------


def test_a_pace_of_one_request_in_ten_minutes_still_paces() -> None:
    server = Scripted(default=accepted)
    # One request each 600 s: the burst lets one go early, the third would wait ~600 s, past the 0.5 s bound.
    with _togai(
        server,
        max_batch_events=1,
        max_requests_per_second=1 / 600,
        timeout=0.5,
    ) as client:
        report = client.send([togai_event(n) for n in range(3)])

    # The same as at 0.1 requests/s (test_pacer.py): a slower pace can never let more requests through.
    assert report.statuses[2] is OutcomeStatus.FAILED
    assert len(server.requests) == 2


def test_a_redis_answer_past_the_wait_bound_is_not_obeyed(fake_redis: Callable[..., FakeRedis]) -> None:
    redis = fake_redis(booked("3600.000000"))  # an hour: not an answer our script can give for max_wait=0.3
    budget = open_budget(f"{redis.url}?key=garbage")

    booking = budget.reserve("/ingestBatch", 0.025, 0.025, 0.3)

    assert redis.answered.wait(5)  # the answer went out (the client may have stopped waiting for it)
    assert booking is None or booking.wait <= 0.3  # "Waiting for a slot is bounded by the request timeout"


def test_a_redis_answering_garbage_never_holds_an_event_back(fake_redis: Callable[..., FakeRedis]) -> None:
    redis = fake_redis(bulk("inf"))
    server = Scripted(default=accepted)
    with _togai(
        server,
        max_requests_per_second=40,
        timeout=0.5,
        rate_budget=f"{redis.url}?key=garbage",
    ) as client:
        report = client.send([togai_event(1)])

    assert redis.answered.wait(5)  # the answer went out (the client may have stopped waiting for it)
    # "events are never held back by the budget store"
    assert report.statuses[0] is DELIVERED, report.outcomes[0].reason
    assert len(server.requests) == 1


def test_a_trickling_redis_is_cut_at_the_half_second_bound(fake_redis: Callable[..., FakeRedis]) -> None:
    # "-1" (no slot) one byte each 0.1 s: 8 bytes, 0.8 s in all, each read well inside 0.5 s.
    redis = fake_redis(bulk("-1"), trickle=0.1)
    server = Scripted(default=accepted)
    with _togai(
        server,
        max_requests_per_second=40,
        timeout=5.0,
        rate_budget=f"{redis.url}?key=trickle",
    ) as client:
        report = client.send([togai_event(1)])

    # Bounded at 0.5 s, the call is given up and the client paces locally: the event is sent. Unbounded,
    # the client waits out the trickle and obeys its "no slot".
    assert report.statuses[0] is DELIVERED, report.outcomes[0].reason


@pytest.mark.parametrize("odd", ["#", "&"])
def test_budget_names_with_odd_characters_stay_distinct_or_are_refused(tmp_path: Path, odd: str) -> None:
    store = tmp_path / "budget.db"
    names = [f"acme{odd}togai-eu", f"acme{odd}togai-us"]
    try:
        urls = [f"sqlite:///{store}?key={name}" for name in names]
        clients = [
            Togai(
                "t",
                transport=Scripted(default=accepted).transport(),
                retry=ONE_TRY,
                max_batch_events=1,
                max_requests_per_second=1,
                timeout=0.3,
                rate_budget=url,
            )
            for url in urls
        ]
    except ConfigurationError:
        return  # refusing a name the URL cannot carry is as good as keeping it
    eu, us = clients
    with eu, us:
        # The first account uses its burst: two requests at once, its next slot a second away.
        assert list(eu.send([togai_event(1), togai_event(2)]).statuses) == [DELIVERED, DELIVERED]
        # Another account's budget is untouched: its first request goes at once.
        report = us.send([togai_event(3)])
    assert report.statuses[0] is DELIVERED, report.outcomes[0].reason


def test_an_announced_limit_below_one_request_per_second_is_ignored() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        response = lago_ok(request)
        response.headers.update({"X-RateLimit-Limit": "0.01", "X-RateLimit-Remaining": "0"})
        return response

    event = {"code": "c", "external_subscription_id": "s"}
    with Lago("t", transport=httpx.MockTransport(broken), max_requests_per_second=40) as client:
        client.send([{**event, "transaction_id": "a"}])
        time.sleep(0.35)  # one bucket-reading window (0.3 s) of the clock: not waiting for any thread
        client.send([{**event, "transaction_id": "b"}])
        pace = client.stats.pace

    # README: "a value below 1 request/s, which no provider announces, is ignored".
    assert pace == 40, pace


def test_the_progress_line_never_shows_a_pace_of_zero() -> None:
    note = pace_note(Stats(pace=0.4, budget_wait=2.0))
    assert note.startswith("paced ") and "paced 0 req/s" not in note, note


# --- What holds -------------------------------------------------------------------------------------------


def test_an_unreachable_redis_warns_once_without_its_password_and_delivers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = Scripted(default=accepted)
    with (
        caplog.at_level(logging.DEBUG),
        Togai(
            "secret-token-1",
            transport=server.transport(),
            retry=ONE_TRY,
            max_batch_events=1,
            max_requests_per_second=1000,
            rate_budget="redis://:hunter2-redis@127.0.0.1:1/0?key=acme",
        ) as client,
    ):
        report = client.send([togai_event(n) for n in range(3)])

    assert list(report.statuses) == [DELIVERED] * 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "Redis" in r.getMessage()]
    assert len(warnings) == 1
    assert "hunter2-redis" not in caplog.text and "secret-token-1" not in caplog.text


def test_a_forked_child_draws_from_the_same_redis_budget(redis_url: str) -> None:
    url = f"{redis_url}?key=fork-{os.getpid()}-{time.monotonic_ns()}"
    budget = open_budget(url)
    parents = budget.reserve("/ingestBatch", 1.0, 1.0, 5.0)  # the parent connects and takes a slot
    assert parents is not None and parents.wait == 0.0
    pid = os.fork()
    if pid == 0:  # the child: the same budget object, a connection of its own
        try:
            booking = budget.reserve("/ingestBatch", 1.0, 1.0, 5.0)
            os._exit(0 if booking is not None and booking.wait == 0.0 else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # Two slots are gone (the parent's and the child's): the next one is a second away, past 0.5 s.
    assert budget.reserve("/ingestBatch", 1.0, 1.0, 0.5) is None


def test_a_budget_key_holding_garbage_in_redis_never_holds_events_back(redis_url: str) -> None:
    import redis

    key = f"garbage-{time.monotonic_ns()}"
    with redis.Redis.from_url(redis_url) as admin:
        admin.rpush(f"{key}:/ingestBatch", "not", "a", "number")  # WRONGTYPE for the script's GET
        admin.set(f"{key}:/ingestBatch:at", "yesterday")
    server = Scripted(default=accepted)
    with _togai(
        server,
        max_requests_per_second=40,
        rate_budget=f"{redis_url}?key={key}",
    ) as client:
        report = client.send([togai_event(1)])
    assert report.statuses[0] is DELIVERED


def test_a_round_of_429s_in_flight_halves_the_pace_once() -> None:
    answers = iter([429] * 4)
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:
            status = next(answers, 202)
        if status == 429:
            return httpx.Response(429, headers={"Retry-After": "0"}, json={"message": "throttled"})
        return accepted(request)

    async def run() -> tuple[float | None, int]:
        async with AsyncTogai(
            "t",
            transport=httpx.MockTransport(handler),
            retry=RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.002, max_retry_after=0.0),
            max_batch_events=1,
            max_in_flight=4,
            max_requests_per_second=40,
        ) as client:
            report = await client.send([togai_event(n) for n in range(4)])
            assert list(report.statuses) == [DELIVERED] * 4
            return client.stats.pace, client.stats.throttled

    pace, throttled = asyncio.run(run())
    assert throttled == 4
    assert pace is not None and 20 <= pace < 30  # one cut (to 20) and a moment of recovery, not 40/16


def test_an_async_send_is_not_held_past_its_deadline_by_a_redis_answer(
    fake_redis: Callable[..., FakeRedis],
) -> None:
    redis = fake_redis(booked("3600.000000"))
    server = Scripted(default=accepted)

    async def run() -> list[OutcomeStatus] | None:
        async with AsyncTogai(
            "t",
            transport=server.transport(),
            retry=RetryPolicy(max_attempts=1, deadline=0.2),
            max_requests_per_second=40,
            timeout=0.2,
            rate_budget=f"{redis.url}?key=async-garbage",
        ) as client:
            sending = asyncio.ensure_future(client.send([togai_event(1)]))
            # The call's own bound is 0.2 s; 0.8 s is slack for a loaded machine, not a measurement.
            done, _ = await asyncio.wait({sending}, timeout=0.8)
            if not done:
                sending.cancel()
                await asyncio.gather(sending, return_exceptions=True)
                return None
            return list(sending.result().statuses)

    statuses = asyncio.run(run())
    assert redis.answered.wait(5)  # the answer went out (the client may have stopped waiting for it)
    assert statuses is not None, "send() was still waiting for its rate budget slot past its deadline"


def test_a_slow_redis_does_not_stretch_the_slot_wait_past_the_request_timeout(
    fake_redis: Callable[..., FakeRedis],
) -> None:
    # Redis answers after 0.45 s: inside its own 0.5 s bound, but far past this client's 0.1 s timeout.
    redis = fake_redis(booked("0.000000"), delay=0.45)
    server = Scripted(default=accepted)
    with Togai(
        "t",
        transport=server.transport(),
        retry=RetryPolicy(max_attempts=1, deadline=0.15),
        max_requests_per_second=40,
        timeout=0.1,
        rate_budget=f"{redis.url}?key=slow",
    ) as client:
        client.send([togai_event(1)])
        answered_before_send_returned = redis.answered.is_set()

    # "Waiting for a slot is bounded by the request timeout"; "RetryPolicy.deadline bounds one batch of
    # send() ... no attempt outlives it": send() must be over before this Redis has answered.
    assert not answered_before_send_returned
