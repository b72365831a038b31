"""The send path checks events against the spec a group at a time: the outcomes stay per event."""

from __future__ import annotations

import gc
import json
from typing import Any

import httpx
import orjson
import pytest

from billing_events import Lago, OutcomeStatus, RetryPolicy, Togai
from billing_events.providers import LagoRules, Pending, TogaiRules
from lago_api.models import EventInputObject

from .scripted import LagoLike, TogaiLike, lago_event, togai_event

D, R = OutcomeStatus.DELIVERED, OutcomeStatus.REJECTED


def test_one_bad_event_in_a_group_is_refused_by_name_and_the_group_goes_out(fast_retry: RetryPolicy) -> None:
    server = TogaiLike()
    events: list[Any] = [togai_event(n) for n in range(300)]
    events[70] = togai_event(70, accountId=17)  # in the second group of the send
    events[71] = togai_event(71, id=None)  # an explicit null id: the overlay assigns one
    events[200] = togai_event(200, id="given-200")
    client = Togai(
        "t", base_url="http://togai.local", transport=httpx.MockTransport(server), retry=fast_retry
    )
    report = client.send(events)
    statuses = [outcome.status for outcome in report]
    assert statuses == [R if n == 70 else D for n in range(300)]
    reason = report.outcomes[70].reason
    assert reason is not None and reason.startswith("event.accountId:") and "string" in reason
    assert report.outcomes[200].key == "given-200"
    assert report.outcomes[71].key and report.outcomes[71].key != report.outcomes[72].key
    assert len(server.stored) == 299


def test_models_mappings_and_null_stamps_in_one_group_are_each_checked(fast_retry: RetryPolicy) -> None:
    server = LagoLike()
    model = EventInputObject.from_dict(lago_event(1))
    events: list[Any] = [
        lago_event(0),
        model,
        lago_event(2, timestamp=None),
        lago_event(3, code=None),  # null where the spec wants a string
        lago_event(4, transaction_id=None),
    ]
    client = Lago(
        "t", base_url="http://lago.local/api/v1", transport=httpx.MockTransport(server), retry=fast_retry
    )
    report = client.send(events)
    assert [outcome.status for outcome in report] == [D, D, D, R, D]
    reason = report.outcomes[3].reason
    assert reason is not None and reason.startswith("event.code:")
    stored = {key: event for (_, key), event in server.stored.items()}
    assert len(stored) == 4
    assert isinstance(stored["txn-2"]["timestamp"], str)  # stamped at acceptance


@pytest.mark.parametrize("rules", [TogaiRules(500, 1 << 20), LagoRules(100, 1 << 20)])
def test_the_group_check_accepts_exactly_what_each_event_check_accepts(rules: Any) -> None:
    make = togai_event if isinstance(rules, TogaiRules) else lago_event
    good = [make(n) for n in range(10)]
    assert rules.all_valid(good)
    assert all(rules.problem(event, keyed=rules.key_field in event) is None for event in good)
    for bad in (
        [*good, make(10, timestamp=[1])],
        [*good, {"unexpected": 1}],
        [*good, 5],
        [*good, make(11, **{rules.key_field: 12})],  # a key of the wrong type
    ):
        assert not rules.all_valid(bad)
    assert not type(rules)(10, 1 << 20, validate=False).all_valid(good)  # no checks: nothing to skip


def _lago_answering(answer: Any, retry: RetryPolicy) -> Lago:
    return Lago("t", base_url="http://lago.local/api/v1", transport=httpx.MockTransport(answer), retry=retry)


def _echo(request: httpx.Request, shape: Any) -> httpx.Response:
    events = orjson.loads(request.content)["events"]
    return httpx.Response(200, content=shape(events))


@pytest.mark.parametrize(
    "shape",
    [
        lambda events: orjson.dumps({"events": events}),  # compact, in order: found without parsing
        lambda events: json.dumps({"events": events[::-1]}, indent=1).encode(),  # spaced, reversed
        lambda events: orjson.dumps(  # a property named like the key: parsed, then compared
            {"events": [{**event, "properties": {"transaction_id": "x"}} for event in events]}
        ),
    ],
)
def test_lagos_echo_of_the_batch_in_any_form_is_delivered(shape: Any, fast_retry: RetryPolicy) -> None:
    report = _lago_answering(lambda request: _echo(request, shape), fast_retry).send(
        [lago_event(n) for n in range(5)]
    )
    assert report.ok and all(outcome.attempts == 1 for outcome in report)


@pytest.mark.parametrize(
    "shape",
    [
        lambda events: orjson.dumps({"events": events[:-1]}),  # one event short
        lambda events: orjson.dumps({"events": [*events[:-1], {**events[0]}]}),  # one key twice
        lambda events: orjson.dumps({"events": events}) + b"<html>",  # not JSON after the echo
    ],
)
def test_a_lago_200_that_is_not_the_echo_of_the_batch_is_retried(shape: Any, fast_retry: RetryPolicy) -> None:
    report = _lago_answering(lambda request: _echo(request, shape), fast_retry).send(
        [lago_event(n) for n in range(5)]
    )
    assert not report.ok
    assert {outcome.status for outcome in report} == {OutcomeStatus.UNKNOWN}
    assert all(outcome.attempts == fast_retry.max_attempts for outcome in report)


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_cookie_a_server_sets_never_rides_on_a_later_request(asynchronous: bool) -> None:
    # Billing APIs use no cookies: the clients keep none, so no server (or proxy) can plant one.
    cookies: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        cookies.append(request.headers.get("cookie"))
        return httpx.Response(202, json={"success": True}, headers={"Set-Cookie": "session=abc; Path=/"})

    events = [togai_event(n) for n in range(3)]
    if asynchronous:
        from billing_events import AsyncTogai

        async def run() -> None:
            transport = httpx.MockTransport(handler)
            async with AsyncTogai("t", base_url="http://togai.local", transport=transport) as client:
                for event in events:
                    assert (await client.send([event])).ok

        import asyncio

        asyncio.run(run())
    else:
        with Togai("t", base_url="http://togai.local", transport=httpx.MockTransport(handler)) as client:
            for event in events:
                assert client.send([event]).ok
    assert cookies == [None, None, None]


def test_a_reports_statuses_and_one_outcome_are_read_without_the_others(fast_retry: RetryPolicy) -> None:
    server = TogaiLike()
    events: list[Any] = [togai_event(n) for n in range(5)]
    events[3] = togai_event(3, accountId=17)
    client = Togai(
        "t", base_url="http://togai.local", transport=httpx.MockTransport(server), retry=fast_retry
    )
    report = client.send(events)
    assert report.statuses == (D, D, D, R, D)
    assert report[3].status is R and report[3].reason is not None
    assert report[-1].key == report.outcomes[4].key
    assert [outcome.key for outcome in report.by_status(R)] == [report[3].key]
    with pytest.raises(IndexError):
        report[5]


def test_a_report_keeps_no_object_per_delivered_event_for_the_garbage_collector_to_scan(
    fast_retry: RetryPolicy,
) -> None:
    # A send() that kept a Pending per event until it returned had the collector move them all into
    # its oldest generation, and then walk them (and the application's whole heap) again and again.
    server = TogaiLike()
    events: list[Any] = [togai_event(n) for n in range(1200)]
    events[7] = togai_event(7, id="given-7")
    gc.collect()
    before = sum(isinstance(thing, Pending) for thing in gc.get_objects())
    with Togai(
        "t", base_url="http://togai.local", transport=httpx.MockTransport(server), retry=fast_retry
    ) as client:
        report = client.send(events)
    gc.collect()
    assert report.ok
    assert sum(isinstance(thing, Pending) for thing in gc.get_objects()) == before
    # Everything the report tells stays there.
    assert report[7].key == "given-7" and report[7].event == {**togai_event(7), "id": "given-7"}
    assert report[8].attempts == 1 and report[8].event == {**togai_event(8), "id": report[8].key}
    assert len({outcome.key for outcome in report}) == 1200


@pytest.mark.parametrize(
    ("body", "keys", "compact"),
    [
        (b'{"events":[{"transaction_id":"a","code":"c"},{"transaction_id":"b"}]}', ["a", "b"], True),
        (b'{"events":[{"transaction_id":"a"},{"transaction_id":"b"}]}\n', ["a", "b"], True),
        (b'{"events":[{"transaction_id":"b"},{"transaction_id":"a"}]}', ["a", "b"], False),
        (b'{"events":[{"transaction_id":"a"}]}', ["a", "b"], False),
        (b'{"events":[{"transaction_id":"a"},{"transaction_id":"b"}]}', ["a"], False),
        (b'{"events":[{"transaction_id":"a\\"b"}]}', ['a"b'], False),  # escaped: parsed instead
        (b'{"events":[{"transaction_id":"a","properties":{"transaction_id":"x"}}]}', ["a"], False),
        (b'{"events": [{"transaction_id": "a"}]}', ["a"], False),  # not compact: parsed instead
        (b'<html>{"transaction_id":"a"}</html>', ["a"], False),
        ('{"events":[{"transaction_id":"é-1"}]}'.encode(), ["é-1"], True),
        # A key holding a quote must not read as two echoed ids, nor an escaped extra id go unseen.
        (b'{"events":[{"transaction_id":"a"},{"transaction_id":"b"}]}', ['a"b'], False),
        (b'{"events":[{"transaction_id":"a"},{"transaction_id":"b"}]}', ['a""b'], False),
        (
            b'{"events":[{"transaction_id":"a"},{"transaction_id":"x\\u00e9"},{"transaction_id":"b"}]}',
            ["a", "b"],
            False,
        ),
    ],
)
def test_lagos_compact_echo_is_read_without_parsing_only_when_it_names_the_batch_one_for_one(
    body: bytes, keys: list[str], compact: bool
) -> None:
    from billing_events.providers.lago import _echoes_in_order

    assert _echoes_in_order(body, keys) is compact


@pytest.mark.parametrize("spaced", [False, True])
def test_a_lago_echo_the_fast_check_leaves_to_the_parser_is_still_delivered(
    spaced: bool, fast_retry: RetryPolicy
) -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        events = json.loads(request.content)["events"][::-1]  # another order, maybe spaced
        return httpx.Response(
            200, content=json.dumps({"events": events}, separators=None if spaced else (",", ":"))
        )

    client = Lago(
        "t", base_url="http://lago.local/api/v1", transport=httpx.MockTransport(echo), retry=fast_retry
    )
    report = client.send([lago_event(n) for n in range(5)])
    assert list(report.statuses) == [D] * 5


@pytest.mark.parametrize(
    ("keys", "answer"),
    [
        (['a"b'], b'{"events":[{"transaction_id":"a"},{"transaction_id":"b"}]}'),
        (
            ["a", "b"],
            b'{"events":[{"transaction_id":"a"},{"transaction_id":"x\\u00e9"},{"transaction_id":"b"}]}',
        ),
    ],
)
def test_a_lago_200_that_echoes_other_events_than_the_batch_delivers_none(
    keys: list[str], answer: bytes, fast_retry: RetryPolicy
) -> None:
    client = Lago(
        "t",
        base_url="http://lago.local/api/v1",
        transport=httpx.MockTransport(lambda request: httpx.Response(200, content=answer)),
        retry=fast_retry,
    )
    report = client.send([lago_event(n, transaction_id=key) for n, key in enumerate(keys)])
    # The answer names events that were not sent: the batch may or may not be stored.
    assert list(report.statuses) == [OutcomeStatus.UNKNOWN] * len(keys)
    assert f"it echoes {answer.count(b'transaction_id')} events that are not the" in (report[0].reason or "")
