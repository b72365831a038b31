"""Review (r29): the asyncio side under cancellation, several event loops and a loop's end.

Each event must end once (``failed`` only if surely never stored), a cancellation must reach the
caller, and the client and the background sender must stay usable, or end, as README promises.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest
from hostile.server import Answer, HostileServer

from billing_events import (
    AsyncBackgroundSender,
    AsyncLago,
    AsyncTogai,
    OutcomeStatus,
    RetryPolicy,
    SenderClosedError,
    partial_report,
)

from .scripted import togai_event

TOKEN = "review-async-canary-token-0f3b8c21"


def _accept(request: httpx.Request) -> httpx.Response:
    return httpx.Response(202, json={"message": "ok"})


# -- the background sender at the end of asyncio.run() ------------------------------------------


def test_a_sender_woken_by_the_last_track_still_lets_asyncio_run_end_and_dead_letters(tmp_path: Path) -> None:
    """README "Never closed": when asyncio.run() ends and cancels the sender's task, the sender
    dead-letters what it holds and track() raises SenderClosedError. Today, when the last thing the
    program did was a track() that woke the sender (a full batch, here flush_at_events=1), the
    cancellation lands while the sender's ``asyncio.wait_for(wake.wait(), flush_interval)`` has
    just finished, and Python 3.11's wait_for swallows it: the sender's task goes on forever (it
    even sends the event after the program "ended"), and asyncio.run() never returns."""
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.extend(event["id"] for event in json.loads(request.content)["events"])
        return _accept(request)

    holder: dict[str, Any] = {}

    async def main() -> None:
        client = AsyncTogai(
            TOKEN,
            base_url="http://togai.local",
            transport=httpx.MockTransport(handler),
            dead_letter_path=tmp_path / "dead.jsonl",
        )
        sender = client.background(flush_interval=3600, flush_at_events=1)
        holder["sender"] = sender
        sender.track(togai_event(0))
        assert await sender.flush(5)
        for _ in range(3):
            await asyncio.sleep(0)  # the sender's task is back waiting for work
        sender.track(togai_event(1))  # wakes it; the program ends right here, never closing it

    def run() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            asyncio.run(main())
        holder["returned"] = True

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(3)  # a bound, not a wait for work: asyncio.run() of this program takes milliseconds
    sender: AsyncBackgroundSender = holder["sender"]
    try:
        assert holder.get("returned"), (
            "asyncio.run() never returned: the sender's task outlived its cancellation"
        )
        with pytest.raises(SenderClosedError):
            sender.track(togai_event(2))
        assert sender.stats.settled == 2
    finally:
        if thread.is_alive():  # free the hung loop: a second cancel is not swallowed
            runner = sender._runner
            assert runner is not None
            runner.get_loop().call_soon_threadsafe(runner.cancel)
            thread.join(5)


# -- a client used under a second event loop ----------------------------------------------------


def test_a_client_used_again_under_a_second_asyncio_run_delivers(hostile: HostileServer) -> None:
    """A kept-alive connection of the first loop is reused by the second: the request is written on the
    dead loop's transport (the server stores it), the answer is never read (that loop's selector no
    longer runs), and the attempt ends at its timeout with ``RuntimeError: Event loop is closed``: the
    event is reported ``unknown`` and dead-lettered though it was stored, after a full ``timeout``."""
    client = AsyncTogai(
        TOKEN,
        base_url=hostile.url,
        timeout=1.0,
        retry=RetryPolicy(max_attempts=2, deadline=5.0, initial_delay=0.01, max_delay=0.01),
    )
    first = asyncio.run(client.send([togai_event(1)]))
    assert [o.status for o in first] == [OutcomeStatus.DELIVERED]

    second = asyncio.run(client.send([togai_event(2)]))

    assert [(o.status, o.reason) for o in second] == [(OutcomeStatus.DELIVERED, None)]
    assert hostile.stored_count == 2


def test_a_client_used_again_under_a_second_asyncio_run_through_its_own_transport_delivers() -> None:
    # With a transport of the user's own (no pooled sockets of ours) a second loop is fine.
    client = AsyncTogai(TOKEN, base_url="http://togai.local", transport=httpx.MockTransport(_accept))
    for n in range(2):
        report = asyncio.run(client.send([togai_event(n)]))
        assert [o.status for o in report] == [OutcomeStatus.DELIVERED]


# -- cancellation at the retry wait -------------------------------------------------------------


def _waiting_client(answer: httpx.Response, answered: asyncio.Event) -> AsyncTogai:
    """A client whose first answer is ``answer`` and whose retry then waits 30 s (the answer's hint)."""

    async def handler(request: httpx.Request) -> httpx.Response:
        return answer

    client = AsyncTogai(
        TOKEN,
        base_url="http://togai.local",
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(max_attempts=3, deadline=120, initial_delay=30, max_delay=30, max_retry_after=30),
        max_requests_per_second=None,
    )

    async def seen(response: httpx.Response) -> None:
        answered.set()

    client.http.event_hooks["response"].append(seen)
    return client


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        # A 503 may come after the event was stored; a 429 refuses before any processing.
        (httpx.Response(503, json={"message": "busy"}, headers={"Retry-After": "30"}), OutcomeStatus.UNKNOWN),
        (
            httpx.Response(429, json={"message": "slow down"}, headers={"Retry-After": "30"}),
            OutcomeStatus.FAILED,
        ),
    ],
)
def test_a_cancellation_during_the_retry_wait_ends_the_event_by_what_the_attempt_proved(
    answer: httpx.Response, status: OutcomeStatus, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def run() -> list[OutcomeStatus]:
        answered, waiting = asyncio.Event(), asyncio.Event()
        backoff = RetryPolicy.backoff

        def signalled(policy: RetryPolicy, attempt_number: int, retry_after: float | None) -> float:
            waiting.set()  # the answer was read: the send now waits for its retry
            return backoff(policy, attempt_number, retry_after)

        monkeypatch.setattr(RetryPolicy, "backoff", signalled)
        async with _waiting_client(answer, answered) as client:
            sending = asyncio.ensure_future(client.send([togai_event(1)]))
            await asyncio.wait_for(waiting.wait(), 10)
            assert answered.is_set()
            sending.cancel()
            with pytest.raises(asyncio.CancelledError) as raised:
                await sending
            report = partial_report(raised.value)
            assert report is not None
            assert client.stats.retried == 0  # cut in its wait: never sent again
            return list(report.statuses)

    assert asyncio.run(run()) == [status]


# -- cancellation and asyncio.timeout() around the request-response calls -----------------------


def test_a_cut_attempt_and_a_callers_timeout_leave_the_task_uncancelled(hostile: HostileServer) -> None:
    # find_event runs in the caller's own task: the attempt's own deadline (a cancel scope there) must
    # leave no pending cancellation behind, and the caller's asyncio.timeout() must still work after it.
    hostile.answer(Answer("slow_head", interval=0.2, status=404, body=b'{"status":404,"error":"Not Found"}'))

    async def run() -> None:
        async with AsyncLago(
            TOKEN, base_url=hostile.url, timeout=0.3, retry=RetryPolicy(max_attempts=1, deadline=5)
        ) as client:
            task = asyncio.current_task()
            assert task is not None
            with pytest.raises(Exception, match="timed out"):
                await client.find_event("tx-1")
            assert task.cancelling() == 0
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await client.find_event("tx-1")
            assert task.cancelling() == 0

    asyncio.run(run())


# -- closing the client while a send is in flight -----------------------------------------------


def test_aclose_during_a_send_ends_the_request_unknown_and_later_sends_failed(hostile: HostileServer) -> None:
    hostile.answer(Answer("trickle", interval=0.3))

    async def run() -> tuple[list[OutcomeStatus], list[OutcomeStatus]]:
        client = AsyncTogai(
            TOKEN,
            base_url=hostile.url,
            timeout=10.0,
            retry=RetryPolicy(max_attempts=3, deadline=20, initial_delay=0.01, max_delay=0.01),
        )
        sending = asyncio.ensure_future(client.send([togai_event(1)]))
        assert await asyncio.to_thread(hostile.arrived.acquire, True, 10)
        await client.aclose()  # does not wait for the answer
        in_flight = list((await sending).statuses)
        await client.aclose()  # twice is fine
        after = list((await client.send([togai_event(2)])).statuses)
        return in_flight, after

    assert asyncio.run(run()) == ([OutcomeStatus.UNKNOWN], [OutcomeStatus.FAILED])
    assert hostile.requests == 1


# -- a cancellation during the TLS handshake ----------------------------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    from .test_native_streams import _certificates

    return _certificates(tmp_path_factory.mktemp("review-async-tls"))


async def _within(seconds: float, condition: Any) -> bool:
    """Let the loop run until ``condition()`` holds, at most ``seconds`` (a bound, not a wait for work)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while not condition():  # noqa: ASYNC110 - socket state has no event to wait on
                await asyncio.sleep(0.005)
    return bool(condition())


def test_a_send_cancelled_during_the_tls_handshake_leaves_no_connection_open(
    certificates: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Holds: asyncio's start_tls closes its transport when cancelled, and the events end failed.
    from .test_native_streams_hostile import _established_to

    monkeypatch.setenv("SSL_CERT_FILE", str(certificates[0]))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # the kernel accepts the TCP connection; nobody answers the ClientHello
    port = listener.getsockname()[1]

    async def run() -> tuple[list[OutcomeStatus], bool]:
        async with AsyncTogai(TOKEN, base_url=f"https://localhost:{port}", timeout=30.0) as client:
            sending = asyncio.ensure_future(client.send([togai_event(1)]))
            assert await _within(5, lambda: _established_to(port)), "the client never connected"
            sending.cancel()
            with pytest.raises(asyncio.CancelledError) as raised:
                await sending
            report = partial_report(raised.value)
            assert report is not None
            closed = await _within(2, lambda: not _established_to(port))
            return list(report.statuses), closed

    try:
        statuses, closed = asyncio.run(run())
    finally:
        listener.close()
    assert statuses == [OutcomeStatus.FAILED]  # no byte of the request left
    assert closed, "the cancelled handshake's connection is still open while the loop runs"
