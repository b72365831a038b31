"""However a request ends, each event ends delivered, duplicate, rejected, failed or unknown, and
``failed`` only when the provider surely does not have it: sync and async clients alike."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
from typing import Any

import pytest
from cli.support import lago_event

from billing_events import AsyncLago, Lago, RetryPolicy, pacing, partial_report
from hostile.conftest import TOKEN, statuses_once_cancelled
from hostile.server import Answer, HostileServer

POLICY = RetryPolicy(max_attempts=2, deadline=1.5, initial_delay=0.01, max_delay=0.01)


@pytest.fixture
def refused_port() -> int:
    """A port nothing listens on: each connect is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def send_one(mode: str, port: int, **options: Any) -> Any:
    return send_to(mode, f"http://127.0.0.1:{port}", **options)


def send_to(mode: str, url: str, **options: Any) -> Any:
    event = lago_event(0, transaction_id="tx-1")
    if mode == "sync":
        with Lago(TOKEN, base_url=url, retry=POLICY, **options) as client:
            return client.send([event])[0]

    async def run() -> Any:
        async with AsyncLago(TOKEN, base_url=url, retry=POLICY, **options) as client:
            return (await client.send([event]))[0]

    return asyncio.run(run())


@pytest.mark.parametrize("timeout", [0.4, 30.0])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_connect_that_never_completes_is_failed(mode: str, timeout: float, unanswered_port: int) -> None:
    # Whichever ends it, the client's connect timeout or the attempt's deadline, no byte was sent.
    outcome = send_one(mode, unanswered_port, timeout=timeout)

    assert outcome.status.value == "failed"
    assert "may have been stored" not in (outcome.reason or "")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_refused_connect_is_failed(mode: str, refused_port: int) -> None:
    outcome = send_one(mode, refused_port)

    assert outcome.status.value == "failed"


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (Answer("reset_mid_body"), "unknown"),  # the server had part of the body: it may have kept it
        (Answer("early", status=503, body=b'{"message":"busy"}'), "unknown"),
        (Answer("early", status=401, body=b'{"message":"bad key"}'), "failed"),  # refused before reading
    ],
)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_request_cut_mid_body_or_answered_before_its_body_ends_as_it_should(
    mode: str, answer: Answer, status: str, hostile: HostileServer
) -> None:
    hostile.answer(answer)

    outcome = send_to(mode, hostile.url)

    assert outcome.status.value == status
    assert hostile.stored_count == 0


# One request per 20 s: a second request waits for its slot far longer than the test takes.
SLOW_PACE = {"max_requests_per_second": 0.05}
LONG_POLICY = RetryPolicy(max_attempts=2, deadline=60.0, initial_delay=0.01, max_delay=0.01)


@pytest.fixture
def budget_wait(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set once a request starts waiting for its rate-budget slot (the pacer records the wait first)."""
    started = threading.Event()
    record = pacing.metrics.rate_budget_waited

    def recorded(provider: str, seconds: float) -> None:
        record(provider, seconds)
        # Only this test's sends wait on the main thread: a sender another test left running does not count.
        if threading.current_thread() is threading.main_thread():
            started.set()

    monkeypatch.setattr(pacing.metrics, "rate_budget_waited", recorded)
    return started


def test_ctrl_c_while_waiting_for_the_rate_budget_ends_the_events_failed(
    hostile: HostileServer, budget_wait: threading.Event
) -> None:
    # The request never reached the transport: nothing left, and the partial report says so.
    main = threading.get_ident()
    with Lago(TOKEN, base_url=hostile.url, retry=LONG_POLICY, timeout=60.0, **SLOW_PACE) as client:
        # The budget's burst: two requests at once, then one per 20 s.
        assert client.send([lago_event(n, transaction_id=f"tx-{n}") for n in range(2)]).ok
        assert client.send([lago_event(2, transaction_id="tx-2")]).ok

        def interrupt_once_waiting() -> None:
            if budget_wait.wait(10):
                signal.pthread_kill(main, signal.SIGINT)

        threading.Thread(target=interrupt_once_waiting, daemon=True).start()
        with pytest.raises(KeyboardInterrupt) as caught:
            client.send([lago_event(3, transaction_id="tx-3")])
    report = partial_report(caught.value)
    assert report is not None
    assert [o.status.value for o in report] == ["failed"]
    assert hostile.stored_count == 3


def test_a_cancellation_while_waiting_for_the_rate_budget_ends_the_events_failed(
    hostile: HostileServer, budget_wait: threading.Event
) -> None:
    async def run() -> list[str]:
        async with AsyncLago(
            TOKEN, base_url=hostile.url, retry=LONG_POLICY, timeout=60.0, **SLOW_PACE
        ) as client:
            # The budget's burst: two requests at once, then one per 20 s.
            assert (await client.send([lago_event(n, transaction_id=f"tx-{n}") for n in range(2)])).ok
            assert (await client.send([lago_event(2, transaction_id="tx-2")])).ok
            sending = asyncio.ensure_future(client.send([lago_event(3, transaction_id="tx-3")]))
            assert await asyncio.to_thread(budget_wait.wait, 10), "the send never waited for its slot"
            return await statuses_once_cancelled(sending)

    assert asyncio.run(run()) == ["failed"]
    assert hostile.stored_count == 3
