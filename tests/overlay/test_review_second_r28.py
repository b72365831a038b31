"""Review r28, second reading: find_event/estimate_fees read by status, BaseExceptions in senders and
callbacks. The first tests are defects it found (each failed before its fix); the others pin what holds."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest

from billing_events import AsyncTogai, Lago, RetryPolicy, Togai
from billing_events.errors import APIError, AuthError, NotFoundError, ServerError

from .scripted import togai_event

TOKEN = "second-review-canary-token-7f3a9c"
FAST = RetryPolicy(max_attempts=2, deadline=5.0, initial_delay=0.001, max_delay=0.01, max_retry_after=0.01)


class Escape(BaseException):
    """A framework's own stop signal (gevent's Timeout, a test runner's): a BaseException, not an Exception."""


def _lago(handler: Any) -> Lago:
    return Lago(TOKEN, base_url="http://lago.local", transport=httpx.MockTransport(handler), retry=FAST)


# -- 1. find_event sends the dots of an id as dots: Rails reads them as a format ---------------------------


@pytest.mark.parametrize("transaction_id", ["evt.json", "order-42.1", "a.b.c"])
def test_find_event_sends_every_dot_of_an_id_escaped(transaction_id: str) -> None:
    """lago-api routes `resources :events, only: %i[create show index]` (config/routes.rb) with no constraint
    on `:id`, so its segment is Rails' default `[^/.?]+` followed by `(.:format)`; the router matches the
    still-escaped path and unescapes the captures after (Journey `find_routes`: `Utils.unescape_uri(val)`).
    `EventsController#show` then looks up `params[:id]`. A literal dot ends the id: `/events/evt.json` finds
    the event `evt`, `/events/a.b.c` matches no route (404). `%2E` is read back as a dot, which is why
    find_request already sends '.' and '..' that way."""
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path)
        return httpx.Response(404, json={"status": 404, "error": "Not Found", "code": "event_not_found"})

    with _lago(handler) as client, pytest.raises(NotFoundError):
        client.find_event(transaction_id)

    escaped = transaction_id.replace(".", "%2E").encode()
    assert seen[0] == b"/api/v1/events/" + escaped


# -- 2. A 5xx that is not retried is not a ServerError -------------------------------------------------------


@pytest.mark.parametrize("status", [501, 505])
@pytest.mark.parametrize("call", ["find_event", "estimate_fees"])
def test_a_5xx_that_is_not_retried_is_still_a_server_error(status: int, call: str) -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(status, text="<html>Not Implemented</html>")

    with _lago(handler) as client:
        calling = {
            "find_event": lambda: client.find_event("txn-1"),
            "estimate_fees": lambda: client.estimate_fees("seats", "sub_1", {"seats": 1}),
        }[call]
        with pytest.raises(APIError) as caught:
            calling()

    assert len(calls) == 1  # 501/505 never change on a retry (_constants.RETRYABLE_STATUSES): holds
    assert caught.value.status == status
    assert isinstance(caught.value, ServerError), type(caught.value).__name__


# -- 3. The asyncio sender's lane killed by a BaseException ----------------------------------------------


def test_the_async_sender_settles_a_batch_whose_transport_raised_a_base_exception() -> None:
    """The thread sender settles such a batch (unknown once sent) and goes on (background.py `_run`); the
    asyncio sender is documented with the same behaviour (README: "AsyncBackgroundSender with the same
    options"), and every event must end in exactly one outcome."""

    async def handler(request: httpx.Request) -> httpx.Response:
        raise Escape("stop")

    async def run() -> tuple[bool, Any]:
        client = AsyncTogai(
            TOKEN, base_url="http://togai.local", transport=httpx.MockTransport(handler), retry=FAST
        )
        async with client:
            sender = client.background(flush_interval=0.01)
            for n in range(3):
                sender.track(togai_event(n))
            flushed = await sender.flush(1.0)
            settled = sender.stats
            await sender.close(1.0)
        return flushed, settled

    flushed, settled = asyncio.run(run())
    assert settled.unknown + settled.failed == 3, settled
    assert flushed


# -- 4. A callback's BaseException on the caller's own thread ---------------------------------------------


def test_a_callback_base_exception_in_a_send_on_the_callers_own_thread_reaches_the_caller() -> None:
    """The code's stated rule (deadletter.py `_call`): a BaseException raised by a callback of the caller's
    own call is "theirs to stop it", and only a sender's thread logs it. On the main thread send() raises
    it; called from a thread of the caller's (a web server's request thread, a ThreadPoolExecutor, a
    gevent Timeout around send()) the same callback is logged "on a sender's thread" and send() goes on."""

    def on_dead_letter(outcome: object) -> None:
        raise Escape("the caller's own stop")

    client = Togai(
        TOKEN,
        base_url="http://togai.local",
        transport=httpx.MockTransport(lambda r: httpx.Response(400, json={"message": "bad"})),
        retry=FAST,
        on_dead_letter=on_dead_letter,
    )
    raised: dict[str, BaseException | None] = {}

    def call() -> None:
        try:
            client.send([togai_event(1)])
            raised["send"] = None
        except BaseException as exc:
            raised["send"] = exc

    with client:
        with pytest.raises(Escape):  # on the main thread: holds
            client.send([togai_event(0)])
        worker = threading.Thread(target=call)
        worker.start()
        worker.join()

    assert isinstance(raised["send"], Escape), raised


# -- What holds ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_a_find_event_auth_answer_echoing_the_token_keeps_its_type_and_not_the_token(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        auth = request.headers["authorization"]
        return httpx.Response(
            status,
            text=f"<html>denied for {auth}</html>",
            headers={"x-request-id": f"rid {auth}", "content-type": "text/html"},
        )

    with _lago(handler) as client, pytest.raises(AuthError) as caught:
        client.find_event("txn-1")
    error = caught.value
    assert error.status == status
    for text in (str(error), repr(error), str(error.request_id)):
        assert TOKEN not in text


def test_a_find_event_429_page_is_retried_and_ends_rate_limited_with_its_hint() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(429, text="<html>slow down</html>", headers={"retry-after": "0"})

    with _lago(handler) as client, pytest.raises(APIError) as caught:
        client.find_event("txn-1")
    assert len(calls) == FAST.max_attempts
    assert caught.value.status == 429
    assert caught.value.retry_after == 0.0  # type: ignore[attr-defined]
