"""Outcomes true to the providers as they behave: stamped timestamps, repeated keys, 207s without
detail, and `unknown` wherever an event may have been stored."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from billing_events import (
    AsyncTogai,
    Lago,
    OutcomeStatus,
    RetryPolicy,
    Togai,
    partial_report,
    read_dead_letters,
)

from .scripted import LagoLike, Scripted, TogaiLike, accepted, lago_event, lago_ok, togai_event

D = OutcomeStatus.DELIVERED
HTML = "<html><body><h1>Welcome to the hotel Wi-Fi</h1></body></html>"


def togai(handler: Any, retry: RetryPolicy, **options: Any) -> Togai:
    transport = httpx.MockTransport(handler)
    return Togai("t", base_url="http://togai.local", transport=transport, retry=retry, **options)


def lago(handler: Any, retry: RetryPolicy, **options: Any) -> Lago:
    transport = httpx.MockTransport(handler)
    return Lago("t", base_url="http://lago.local/api/v1", transport=transport, retry=retry, **options)


def bodies(server: Scripted) -> list[list[dict[str, Any]]]:
    return [body["events"] for body in server.bodies()]


# -- stable timestamps ----------------------------------------------------------


def test_lago_events_without_a_timestamp_get_one_that_every_retry_repeats(fast_retry: RetryPolicy) -> None:
    server = Scripted(httpx.ReadError("lost"), httpx.Response(503), default=lago_ok)
    events = [lago_event(n) for n in range(5)]
    for event in events:
        del event["timestamp"]
    events[0]["timestamp"] = None  # an explicit null means "none given" too
    report = lago(server, fast_retry).send(events)
    assert report.ok
    sent = bodies(server)
    assert len(sent) == 3
    stamps = [[event["timestamp"] for event in body] for body in sent]
    assert stamps[0] == stamps[1] == stamps[2]
    assert all(isinstance(stamp, str) and float(stamp) > 1.7e9 for stamp in stamps[0])
    # The outcome carries what was sent, so a replay repeats the timestamp as well as the key.
    assert [o.event["timestamp"] for o in report] == stamps[0]
    assert "timestamp" not in events[1]  # the caller's dict is left alone


def test_a_given_timestamp_is_sent_as_it_is(fast_retry: RetryPolicy) -> None:
    server = Scripted(default=lago_ok)
    lago(server, fast_retry).send([lago_event(1, timestamp=1714558530.25)])
    assert bodies(server)[0][0]["timestamp"] == 1714558530.25


def test_dead_letters_carry_the_stamped_timestamp_and_a_replay_repeats_it(
    fast_retry: RetryPolicy, tmp_path: Path
) -> None:
    letters = tmp_path / "dead.jsonl"
    down = Scripted(default=httpx.ConnectError("refused"))
    event = lago_event(1)
    del event["timestamp"]
    report = lago(down, fast_retry, dead_letter_path=letters).send([event])
    assert report.outcomes[0].status is OutcomeStatus.FAILED
    [letter] = list(read_dead_letters(letters))
    up = Scripted(default=lago_ok)
    assert lago(up, fast_retry).replay(letters).ok
    assert bodies(up)[0][0]["timestamp"] == letter.event["timestamp"]
    assert bodies(up)[0][0]["transaction_id"] == letter.key


def test_the_background_sender_stamps_at_track_time(fast_retry: RetryPolicy) -> None:
    server = Scripted(httpx.ReadTimeout("slow"), default=lago_ok)
    event = lago_event(1)
    del event["timestamp"]
    with lago(server, fast_retry) as client:
        sender = client.background(flush_interval=0.01)
        sender.track(event)
        sender.close(timeout=10)
    first, second = bodies(server)
    assert first[0]["timestamp"] == second[0]["timestamp"]


# -- repeated keys ------------------------------------------------------------


def test_the_same_togai_event_twice_in_one_send_is_sent_once_and_reported_duplicate(
    fast_retry: RetryPolicy,
) -> None:
    server = TogaiLike()
    events = [togai_event(n, id=f"ev-{n}") for n in range(4)] + [togai_event(2, id="ev-2")]
    report = togai(server, fast_retry).send(events)
    assert [o.status for o in report] == [D, D, D, D, OutcomeStatus.DUPLICATE]
    assert len(server.stored) == 4


def test_a_repeated_key_with_other_content_is_rejected_naming_the_key(fast_retry: RetryPolicy) -> None:
    server = TogaiLike()
    events = [togai_event(1, id="ev-1"), togai_event(2, id="ev-1")]
    report = togai(server, fast_retry).send(events)
    assert report.outcomes[0].status is D
    assert report.outcomes[1].status is OutcomeStatus.REJECTED
    assert "'ev-1'" in (report.outcomes[1].reason or "")
    assert "event 0" in (report.outcomes[1].reason or "")
    assert list(server.stored) == ["ev-1"]
    assert server.stored["ev-1"]["attributes"][0]["value"] == "1"


def test_a_repeat_of_an_event_that_failed_is_not_called_a_duplicate(fast_retry: RetryPolicy) -> None:
    server = Scripted(default=httpx.ConnectError("refused"))
    events = [lago_event(1), lago_event(1)]
    report = lago(server, fast_retry).send(events)
    assert [o.status for o in report] == [OutcomeStatus.FAILED, OutcomeStatus.FAILED]


def test_lago_repeats_without_timestamps_compare_on_content(fast_retry: RetryPolicy) -> None:
    server = LagoLike()
    first, second, third = lago_event(1), lago_event(1), lago_event(1, properties={"calls": 99})
    for event in (first, second, third):
        del event["timestamp"]
    report = lago(server, fast_retry).send([first, second, third])
    assert [o.status for o in report] == [D, OutcomeStatus.DUPLICATE, OutcomeStatus.REJECTED]
    assert len(server.stored) == 1


def test_a_repeat_of_an_event_whose_batch_was_already_delivered_is_compared_on_content(
    fast_retry: RetryPolicy,
) -> None:
    # Lago takes 100 events a request: the repeats come after the first request was answered.
    server = LagoLike()
    events = [lago_event(n) for n in range(150)]
    del events[5]["timestamp"]  # stamped by the overlay: its repeat compares without the stamp
    repeat_5 = lago_event(5)
    del repeat_5["timestamp"]
    events += [lago_event(3), repeat_5, lago_event(4, properties={"calls": 99})]
    report = lago(server, fast_retry).send(events)
    duplicate, rejected = OutcomeStatus.DUPLICATE, OutcomeStatus.REJECTED
    assert [o.status for o in report][-3:] == [duplicate, duplicate, rejected]
    assert "event 4" in (report[-1].reason or "")
    assert all(status is D for status in report.statuses[:150])
    assert len(server.stored) == 150


def test_one_transaction_id_for_two_subscriptions_never_shares_a_batch(fast_retry: RetryPolicy) -> None:
    server = LagoLike()
    events = [lago_event(n) for n in range(6)]
    events.append(lago_event(1, external_subscription_id="sub-other"))
    report = lago(server, fast_retry).send(events)
    assert report.ok
    assert len(server.stored) == 7
    assert ("sub-other", "txn-1") in server.stored


def test_a_rolled_back_batch_with_a_shared_id_is_confirmed_one_event_at_a_time(
    fast_retry: RetryPolicy,
) -> None:
    """The background queue batches what was tracked; the server's match by id alone must not cost an event."""
    server = LagoLike()
    with lago(server, fast_retry) as client:
        outcomes: list[tuple[str, str, OutcomeStatus]] = []
        sender = client.background(
            flush_interval=60,
            on_outcome=lambda o: outcomes.append((o.event["external_subscription_id"], o.key, o.status)),
        )
        sender.track(lago_event(1, external_subscription_id="sub-a"))
        sender.track(lago_event(1, external_subscription_id="sub-b"))
        sender.track(lago_event(2))
        sender.close(timeout=10)
    assert sorted(server.stored) == [("sub-2", "txn-2"), ("sub-a", "txn-1"), ("sub-b", "txn-1")]
    assert sorted(outcomes) == [("sub-2", "txn-2", D), ("sub-a", "txn-1", D), ("sub-b", "txn-1", D)]


# -- Togai 207 without detail -------------------------------------------------------


def test_a_togai_207_without_detail_is_narrowed_until_each_event_has_its_answer(
    fast_retry: RetryPolicy,
) -> None:
    server = TogaiLike()
    events = [togai_event(n, id=f"ev-{n}") for n in range(20)]
    for bad in (3, 11):
        events[bad]["attributes"] = [{"name": "calls", "value": "three"}]
    report = togai(server, fast_retry, validate=False).send(events)
    assert report.counts[OutcomeStatus.UNKNOWN] == 0
    assert [n for n, o in enumerate(report) if o.status is OutcomeStatus.REJECTED] == [3, 11]
    assert report.counts[D] == 18
    assert sorted(server.stored) == sorted(f"ev-{n}" for n in range(20) if n not in (3, 11))


# -- honest outcomes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        pytest.param(httpx.ReadTimeout("no answer"), OutcomeStatus.UNKNOWN, id="read-timeout"),
        pytest.param(httpx.RemoteProtocolError("reset"), OutcomeStatus.UNKNOWN, id="lost-response"),
        pytest.param(httpx.Response(503), OutcomeStatus.UNKNOWN, id="503"),
        pytest.param(httpx.Response(200, text=HTML), OutcomeStatus.UNKNOWN, id="html-200"),
        pytest.param(httpx.ConnectError("refused"), OutcomeStatus.FAILED, id="connection-refused"),
        pytest.param(httpx.Response(429), OutcomeStatus.FAILED, id="429"),
        pytest.param(httpx.Response(401, json={"status": 401}), OutcomeStatus.FAILED, id="401"),
    ],
)
def test_retries_exhausted_end_unknown_only_where_the_event_may_be_stored(
    fast_retry: RetryPolicy, answer: httpx.Response | Exception, status: OutcomeStatus
) -> None:
    server = Scripted(default=answer)
    report = lago(server, fast_retry).send([lago_event(n) for n in range(3)])
    assert {o.status for o in report} == {status}


def test_a_429_after_a_lost_response_still_ends_unknown(fast_retry: RetryPolicy) -> None:
    server = Scripted(httpx.ReadError("lost"), default=httpx.Response(429))
    report = lago(server, fast_retry).send([lago_event(1)])
    assert report.outcomes[0].status is OutcomeStatus.UNKNOWN


@pytest.mark.parametrize("status", [500, 502, 504, 520, 524, 530, 599])
def test_gateway_statuses_are_retried(fast_retry: RetryPolicy, status: int) -> None:
    server = Scripted(httpx.Response(status, text=HTML), default=accepted)
    report = togai(server, fast_retry).send([togai_event(1)])
    assert report.ok
    assert len(server.requests) == 2


@pytest.mark.parametrize("status", [501, 505])
def test_statuses_that_a_retry_cannot_change_are_not_retried(fast_retry: RetryPolicy, status: int) -> None:
    server = Scripted(httpx.Response(status), default=accepted)
    report = togai(server, fast_retry).send([togai_event(1)])
    assert report.outcomes[0].status is OutcomeStatus.FAILED
    assert len(server.requests) == 1


def test_an_undecodable_answer_is_retried(fast_retry: RetryPolicy) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        stream = httpx.ByteStream(b"this is not gzip")
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=stream)

    server = Scripted(broken, default=lago_ok)
    report = lago(server, fast_retry).send([lago_event(1)])
    assert report.ok
    assert len(server.requests) == 2


@pytest.mark.parametrize("provider", ["togai", "lago"])
def test_an_html_200_is_not_delivered(fast_retry: RetryPolicy, provider: str) -> None:
    portal = httpx.Response(200, text=HTML, headers={"Content-Type": "text/html"})
    if provider == "togai":
        server = Scripted(portal, default=accepted)
        report = togai(server, fast_retry).send([togai_event(1)])
    else:
        server = Scripted(portal, default=lago_ok)
        report = lago(server, fast_retry).send([lago_event(1)])
    assert report.ok
    assert len(server.requests) == 2  # the portal's 200 counted for nothing


def test_a_lago_200_that_echoes_other_events_is_not_delivered(fast_retry: RetryPolicy) -> None:
    def echo_other(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"events": [lago_event(999)]})

    server = Scripted(echo_other, default=lago_ok)
    report = lago(server, fast_retry).send([lago_event(1)])
    assert report.ok
    assert len(server.requests) == 2


# -- interrupted send() ---------------------------------------------------------------


class Interrupt(Exception):
    pass


def test_an_iterable_raising_halfway_leaves_every_accepted_event_accounted_for(
    fast_retry: RetryPolicy, tmp_path: Path
) -> None:
    server = TogaiLike()
    letters = tmp_path / "dead.jsonl"
    events = [togai_event(n) for n in range(1200)]

    def source() -> Iterator[dict[str, Any]]:
        yield from events[:700]
        raise Interrupt("the caller's reader broke")

    client = togai(server, fast_retry, dead_letter_path=letters)
    with pytest.raises(Interrupt) as caught:
        client.send(source())
    report = partial_report(caught.value)
    assert report is not None
    assert len(report) == 700
    assert report.counts[D] == 500  # one full batch went out before the reader broke
    assert report.counts[OutcomeStatus.FAILED] == 200
    assert len(list(read_dead_letters(letters))) == 200
    # Re-sending what was not delivered, and the rest, stores every event exactly once.
    again = client.send([*report.to_resend(), *events[700:]])
    assert again.ok
    assert len(server.stored) == 1200


def test_ctrl_c_in_a_sync_send_keeps_the_outcomes_and_the_keys(fast_retry: RetryPolicy) -> None:
    server = TogaiLike()
    calls = 0

    def interrupted_on_the_third_request(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 3:
            server(request)  # stored, then the user hits Ctrl-C before the answer is read
            raise KeyboardInterrupt
        return server(request)

    client = togai(interrupted_on_the_third_request, fast_retry, max_batch_events=100)
    events = [togai_event(n) for n in range(500)]
    with pytest.raises(KeyboardInterrupt) as caught:
        client.send(events)
    report = partial_report(caught.value)
    assert report is not None
    assert report.counts[D] == 200
    assert report.counts[OutcomeStatus.UNKNOWN] == 100  # the request in flight may have been stored
    # The chunker had taken one more event, to see that the batch was full: never sent.
    assert report.counts[OutcomeStatus.FAILED] == 1
    assert len(report) == 301
    again = client.send([*report.to_resend(), *events[len(report) :]])
    assert again.ok
    assert len(server.stored) == 500


def test_a_cancelled_async_send_keeps_the_outcomes_and_a_resend_bills_once(fast_retry: RetryPolicy) -> None:
    server = TogaiLike()
    stall = asyncio.Event()
    calls = 0
    stalling = True

    async def slow_after_two(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls > 2 and stalling:
            server(request)
            await stall.wait()  # stored; the answer never comes before the caller gives up
        return server(request)

    events = [togai_event(n) for n in range(2000)]

    async def run() -> tuple[BaseException, int]:
        async with AsyncTogai(
            "t",
            base_url="http://togai.local",
            transport=httpx.MockTransport(slow_after_two),
            retry=fast_retry,
            max_batch_events=100,
            max_in_flight=4,
        ) as client:
            try:
                await asyncio.wait_for(client.send(events), timeout=0.5)
            except TimeoutError as exc:
                caught: BaseException = exc.__context__ or exc
            nonlocal stalling
            stalling = False
            report = partial_report(caught)
            assert report is not None
            again = await client.send([*report.to_resend(), *events[len(report) :]])
            assert again.ok
            return caught, len(report)

    # asyncio.wait_for turns the cancellation into TimeoutError; the report rides on the cancellation.
    caught, accepted_count = asyncio.run(run())
    assert isinstance(caught, asyncio.CancelledError)
    assert accepted_count >= 200
    assert len(server.stored) == 2000


def test_the_partial_report_names_unknown_events_with_their_keys(fast_retry: RetryPolicy) -> None:
    def refuse_second(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["events"][0]["id"] == "k-5":
            raise KeyboardInterrupt
        return accepted(request)

    client = togai(refuse_second, fast_retry, max_batch_events=5)
    with pytest.raises(KeyboardInterrupt) as caught:
        client.send(togai_event(n, id=f"k-{n}") for n in range(10))
    report = partial_report(caught.value)
    assert report is not None
    assert [o.key for o in report.by_status(OutcomeStatus.UNKNOWN)] == [f"k-{n}" for n in range(5, 10)]
    assert [e["id"] for e in report.to_resend()] == [f"k-{n}" for n in range(5, 10)]
