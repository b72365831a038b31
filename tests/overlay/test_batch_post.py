"""Batches go out through the client's headers, hooks and transport, without ``httpx.Client.send`` (``_post``)."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from billing_events import AsyncTogai, Lago, OutcomeStatus, Report, RetryPolicy, Togai, pacing, partial_report
from billing_events import __version__ as version

from .scripted import Scripted, accepted, lago_event, lago_ok, togai_event

TOKEN = "secret-token-1234"


def test_a_send_on_a_closed_client_ends_its_events_failed_and_sends_nothing(fast_retry: RetryPolicy) -> None:
    server = Scripted(default=accepted)
    client = Togai(TOKEN, base_url="http://togai.local", transport=server.transport(), retry=fast_retry)
    client.close()
    report = client.send([togai_event(1), togai_event(2)])
    # Nothing left the process, so the provider surely has none of them: failed, never unknown.
    assert list(report.statuses) == [OutcomeStatus.FAILED, OutcomeStatus.FAILED]
    assert "client is closed" in (report[0].reason or "")
    assert server.requests == []


def test_an_async_send_on_a_closed_client_ends_its_events_failed_and_sends_nothing(
    fast_retry: RetryPolicy,
) -> None:
    server = Scripted(default=accepted)

    async def run() -> list[OutcomeStatus]:
        client = AsyncTogai(
            TOKEN, base_url="http://togai.local", transport=server.transport(), retry=fast_retry
        )
        await client.aclose()
        return list((await client.send([togai_event(1)])).statuses)

    assert asyncio.run(run()) == [OutcomeStatus.FAILED]
    assert server.requests == []


def test_a_batch_carries_the_clients_headers_and_no_cookie_a_server_set(fast_retry: RetryPolicy) -> None:
    def with_cookie(request: httpx.Request) -> httpx.Response:
        answer = lago_ok(request)
        answer.headers["set-cookie"] = "session=abc; Path=/"
        return answer

    server = Scripted(with_cookie, default=lago_ok)
    with Lago(
        TOKEN, base_url="http://lago.local/api/v1", transport=server.transport(), retry=fast_retry
    ) as client:
        assert client.send([lago_event(1)]).ok
        assert client.send([lago_event(2)]).ok
    first, second = server.requests
    for request in (first, second):
        assert request.method == "POST" and request.url == "http://lago.local/api/v1/events/batch"
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["user-agent"] == f"billing-events/{version}"
        assert request.headers["content-type"] == "application/json"
    assert "cookie" not in second.headers


@pytest.mark.parametrize("status", [301, 307, 308])
def test_a_redirect_answering_a_batch_is_not_followed(status: int, fast_retry: RetryPolicy) -> None:
    moved = httpx.Response(status, headers={"location": "http://elsewhere.local/togai/ingestBatch"})
    server = Scripted(moved, default=accepted)
    with Togai(
        TOKEN, base_url="http://togai.local", transport=server.transport(), retry=fast_retry
    ) as client:
        report = client.send([togai_event(1)])
    assert [str(request.url) for request in server.requests] == ["http://togai.local/ingestBatch"]
    assert not report.ok
    assert "redirected to http://elsewhere.local" in (report[0].reason or "")


def test_a_client_closed_while_a_batch_waits_for_its_rate_budget_sends_it_no_more(
    monkeypatch: pytest.MonkeyPatch, fast_retry: RetryPolicy
) -> None:
    waiting = threading.Event()
    record = pacing.metrics.rate_budget_waited

    def recorded(provider: str, seconds: float) -> None:
        record(provider, seconds)
        if seconds > 0:
            waiting.set()  # a batch now sleeps until its slot

    monkeypatch.setattr(pacing.metrics, "rate_budget_waited", recorded)
    server = Scripted(default=accepted)
    client = Togai(
        TOKEN,
        base_url="http://togai.local",
        transport=server.transport(),
        retry=fast_retry,
        max_batch_events=1,
        max_requests_per_second=1,  # after the burst, a slot a second
    )
    reports: list[Report] = []
    sending = threading.Thread(target=lambda: reports.append(client.send([togai_event(n) for n in range(8)])))
    sending.start()
    assert waiting.wait(10)
    sent_before_close = len(server.requests)
    client.close()
    sending.join(10)
    (report,) = reports
    assert len(server.requests) == sent_before_close  # the waiting batch did not go out once it was closed
    assert report.counts[OutcomeStatus.DELIVERED] == sent_before_close
    assert report.counts[OutcomeStatus.FAILED] == 8 - sent_before_close


def test_a_request_hook_that_raises_ends_the_batch_failed_names_the_error_and_sends_nothing(
    fast_retry: RetryPolicy,
) -> None:
    server = Scripted(default=accepted)

    def signing(request: httpx.Request) -> None:
        raise ValueError(f"cannot sign a request with {TOKEN}")

    async def async_signing(request: httpx.Request) -> None:
        signing(request)

    with Togai(
        TOKEN, base_url="http://togai.local", transport=server.transport(), retry=fast_retry
    ) as client:
        client.http.event_hooks["request"].append(signing)
        report = client.send([togai_event(1), togai_event(2)])

    async def run() -> Report:
        async with AsyncTogai(
            TOKEN, base_url="http://togai.local", transport=server.transport(), retry=fast_retry
        ) as client:
            client.http.event_hooks["request"].append(async_signing)
            return await client.send([togai_event(3)])

    for outcomes in (report, asyncio.run(run())):
        # The hook ran before anything left: the provider surely has none of them.
        assert {outcome.status for outcome in outcomes} == {OutcomeStatus.FAILED}
        reason = outcomes[0].reason or ""
        assert "request hook raised ValueError" in reason and "cannot sign" in reason
        assert TOKEN not in reason and TOKEN not in str(outcomes[0].error)
    assert server.requests == []


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message")


def _gateway_headers(request: httpx.Request) -> None:
    # A gateway that wants the key in its own header: the hook moves it there.
    request.headers["X-Gateway-Key"] = request.headers.pop("Authorization").partition(" ")[2]


def _dump_headers(request: httpx.Request) -> None:
    keys = {
        name: value for name, value in request.headers.items() if name in ("authorization", "x-gateway-key")
    }
    raise ValueError(f"cannot sign with {keys}")


@pytest.mark.parametrize(
    ("token", "hooks", "says"),
    [
        ("gateway-token-1234", [_gateway_headers, _dump_headers], "cannot sign"),
        ("spacedpart secondpart", [_dump_headers], "cannot sign"),
        ("unprintable-token-1234", [Unprintable], "Unprintable"),
    ],
    ids=["token-moved-by-a-hook", "token-with-a-space", "message-that-raises"],
)
def test_a_raising_request_hook_ends_failed_without_the_token_however_it_fails(
    fast_retry: RetryPolicy, token: str, hooks: list[object], says: str
) -> None:
    server = Scripted(default=accepted)

    def raising(request: httpx.Request) -> None:
        for hook in hooks:
            if isinstance(hook, type):
                raise hook()
            hook(request)  # type: ignore[operator]

    async def async_raising(request: httpx.Request) -> None:
        raising(request)

    with Togai(
        token, base_url="http://togai.local", transport=server.transport(), retry=fast_retry
    ) as client:
        client.http.event_hooks["request"].append(raising)
        report = client.send([togai_event(1)])

    async def run() -> Report:
        async with AsyncTogai(
            token, base_url="http://togai.local", transport=server.transport(), retry=fast_retry
        ) as client:
            client.http.event_hooks["request"].append(async_raising)
            return await client.send([togai_event(2)])

    for outcomes in (report, asyncio.run(run())):
        [outcome] = outcomes
        assert outcome.status is OutcomeStatus.FAILED
        reason = outcome.reason or ""
        assert "request hook raised" in reason and says in reason
        for part in token.split():
            assert part not in reason and part not in repr(outcome.error)
        # Nor is the hook's own error (its message unscrubbed) kept as the context of the one raised.
        assert outcome.error is not None and outcome.error.__context__ is None
    assert server.requests == []


@pytest.mark.parametrize("where", ["transport", "hook"])
def test_a_cancellation_raised_inside_a_request_ends_its_events_and_the_send_returns(
    where: str, fast_retry: RetryPolicy
) -> None:
    # Nobody cancelled the caller: the CancelledError came out of the request itself. It once ended a
    # lane as if cancelled, and send() then failed with "event 0 was never settled".
    async def handler(request: httpx.Request) -> httpx.Response:
        if where == "transport":
            raise asyncio.CancelledError
        return accepted(request)

    async def hook(request: httpx.Request) -> None:
        if where == "hook":
            raise asyncio.CancelledError

    async def run() -> Report:
        async with AsyncTogai(
            TOKEN, base_url="http://togai.local", transport=httpx.MockTransport(handler), retry=fast_retry
        ) as client:
            client.http.event_hooks["request"].append(hook)
            return await client.send([togai_event(1), togai_event(2)])

    report = asyncio.run(run())
    # From the transport the request may have left (unknown); from a hook before it, surely not (failed).
    expected = OutcomeStatus.UNKNOWN if where == "transport" else OutcomeStatus.FAILED
    assert list(report.statuses) == [expected, expected]
    assert "cancelled from inside" in (report[0].reason or "")


def test_a_cancelled_async_send_still_raises_the_cancellation(fast_retry: RetryPolicy) -> None:
    started = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.Event().wait()  # until cancelled
        raise AssertionError("not reached")

    async def run() -> Report | None:
        async with AsyncTogai(
            TOKEN, base_url="http://togai.local", transport=httpx.MockTransport(handler), retry=fast_retry
        ) as client:
            sending = asyncio.ensure_future(client.send([togai_event(1)]))
            await asyncio.wait_for(started.wait(), 10)
            sending.cancel()
            with pytest.raises(asyncio.CancelledError) as raised:
                await sending
            return partial_report(raised.value)

    report = asyncio.run(run())
    assert report is not None and list(report.statuses) == [OutcomeStatus.UNKNOWN]
