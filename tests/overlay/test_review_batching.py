"""Review: batching within the providers' limits, halving, and keys and stamps that stay stable.

Every request body is recorded (``Scripted`` / ``httpx.MockTransport``); no network, no sleeps.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import orjson
import pytest

from billing_events import AsyncTogai, Lago, OutcomeStatus, RetryPolicy, Togai

from .scripted import LagoLike, Scripted, TogaiLike, accepted, lago_event, lago_ok, togai_event

D = OutcomeStatus.DELIVERED
DUP = OutcomeStatus.DUPLICATE
ENVELOPE = len(b'{"events":[') + len(b"]}")


def togai(handler: Any, retry: RetryPolicy, **options: Any) -> Togai:
    return Togai(
        "t", base_url="http://togai.local", transport=httpx.MockTransport(handler), retry=retry, **options
    )


def lago(handler: Any, retry: RetryPolicy, **options: Any) -> Lago:
    transport = httpx.MockTransport(handler)
    return Lago("t", base_url="http://lago.local/api/v1", transport=transport, retry=retry, **options)


def payload(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event)


# -- answer caps against what Lago really answers ---------------------------------------------------


def rails_echo(request: httpx.Request) -> httpx.Response:
    """Lago's 200 to a batch as lago-api renders it.

    ``EventsController#batch`` renders ``CollectionSerializer`` of ``V1::EventSerializer`` (lago-api
    app/controllers/api/v1/events_controller.rb, app/serializers/v1/event_serializer.rb): each event's
    properties are echoed. Rails' JSON encoder escapes ``<``, ``>`` and ``&`` as ``\\u003c`` ... by
    default (rails activesupport/lib/active_support/json/encoding.rb: ``escape_html_entities_in_json =
    true``; lago-api config/application.rb does not turn it off): one byte sent, six echoed.
    """
    events = json.loads(request.content)["events"]
    echoed = [
        {
            "lago_id": "0f0f0f0f-0000-4000-8000-000000000000",
            "transaction_id": event["transaction_id"],
            "lago_customer_id": None,
            "external_customer_id": None,
            "code": event["code"],
            "timestamp": "2024-05-01T10:15:30.000Z",
            "properties": event.get("properties") or {},
            "lago_subscription_id": None,
            "external_subscription_id": event["external_subscription_id"],
            "created_at": "2024-05-01T10:15:30Z",
        }
        for event in events
    ]
    text = json.dumps({"events": echoed}, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, escaped)
    return httpx.Response(200, content=text.encode(), headers={"content-type": "application/json"})


def test_lagos_echo_of_a_batch_within_the_limits_is_read_whole(fast_retry: RetryPolicy) -> None:
    server = Scripted(default=rails_echo)
    # 100 events of about 9.6 KB each: 0.96 MB, within 100 events and 1 MiB; an HTML snippet in a property.
    events = [lago_event(n, properties={"snippet": "<" * 9_500}) for n in range(100)]
    report = lago(server, fast_retry).send(events)
    assert all(len(request.content) <= 1_048_576 for request in server.requests)
    # Today: AnswerTooLarge ("HTTP 200 answer of 5731102 bytes; at most 4194304 expected"), retried, then
    # unknown for 100 events that the first request stored (and dead letters a replay cannot clear).
    assert report.statuses == (D,) * 100, report[0].reason
    assert len(server.requests) == 1


def test_a_large_batchs_value_already_exist_answer_is_read(fast_retry: RetryPolicy) -> None:
    # README: "A larger max_batch_events is taken as it is, for a server that allows more (a self-hosted
    # Lago's LAGO_EVENTS_BATCH_MAX_LENGTH)". Sending the same 6,000 small events again (a replay after a
    # lost answer, say) gets Lago's 422 with one {"transaction_id":["value_already_exist"]} per index
    # (lago-api app/services/events/create_batch_service.rb): about 300 KB.
    store = LagoLike()
    events = [
        {
            "transaction_id": f"txn-{n}",
            "external_subscription_id": "sub-1",
            "code": "c",
            "timestamp": 1714558530,
        }
        for n in range(6_000)
    ]
    client = lago(store, fast_retry, max_batch_events=6_000)
    first = client.send(events)
    assert first.statuses == (D,) * 6_000
    again = client.send(events)
    # Today: AnswerTooLarge ("HTTP 422 answer of 298980 bytes; at most 262144 expected") -> unknown x 6000.
    assert again.statuses == (DUP,) * 6_000, again[0].reason


# -- byte and count limits at their edges ------------------------------------------------------------


def test_no_request_passes_the_byte_limit_with_escapes_and_non_ascii(fast_retry: RetryPolicy) -> None:
    """Control characters become six-byte escapes, non-ASCII two to four bytes: counted as sent."""
    server = Scripted(default=accepted)
    values = ["\x01" * 150, "é" * 190, "\U0001f600" * 190, '"\\' * 95, "<>&" * 60]
    events = [
        togai_event(n, dimensions={f"d{k}": values[(n + k) % len(values)] for k in range(5)})
        for n in range(120)
    ]
    report = togai(server, fast_retry, max_batch_bytes=9_000).send(events)
    assert report.statuses == (D,) * 120
    assert len(server.requests) > 1
    assert all(len(request.content) <= 9_000 for request in server.requests)
    assert [key for keys in server.sent_keys("id") for key in keys] == [outcome.key for outcome in report]


def test_one_event_exactly_at_the_byte_limit_goes_and_one_byte_more_is_refused_alone(
    fast_retry: RetryPolicy,
) -> None:
    server = Scripted(default=accepted)
    base = togai_event(1, id="k-1", dimensions={"x": "a"})
    size = ENVELOPE + len(payload(base))
    client = togai(server, fast_retry, max_batch_bytes=size)
    over = togai_event(2, id="k-2", dimensions={"x": "ab"})
    report = client.send([over, base, togai_event(3, id="k-3", dimensions={"x": "b"})])
    assert report[0].status is OutcomeStatus.REJECTED
    assert f"a request body holds at most {size}" in (report[0].reason or "")
    assert report.statuses[1:] == (D, D)
    assert all(len(request.content) <= size for request in server.requests)
    assert len(server.requests[0].content) == size  # the event at the limit went, alone


def test_a_batch_exactly_at_max_batch_bytes_is_one_request(fast_retry: RetryPolicy) -> None:
    server = Scripted(default=accepted)
    first, second = togai_event(1, id="a"), togai_event(2, id="b")
    limit = ENVELOPE + len(payload(first)) + 1 + len(payload(second))  # {"events":[A,B]}
    report = togai(server, fast_retry, max_batch_bytes=limit).send([first, second])
    assert report.statuses == (D, D)
    # Today two requests of 187 bytes each, where one of 362 (= the limit) was allowed.
    assert [len(request.content) for request in server.requests] == [limit]


@pytest.mark.parametrize(("limit", "sizes"), [(1, [1] * 5), (5, [5]), (6, [5])])
def test_max_batch_events_at_its_edges(fast_retry: RetryPolicy, limit: int, sizes: list[int]) -> None:
    server = Scripted(default=lago_ok)
    report = lago(server, fast_retry, max_batch_events=limit).send(lago_event(n) for n in range(5))
    assert [len(keys) for keys in server.sent_keys("transaction_id")] == sizes
    assert report.statuses == (D,) * 5


# -- halving, retries, keys, stamps and order --------------------------------------------------------


def test_lago_batch_of_old_and_new_events_ends_duplicate_and_delivered_in_order(
    fast_retry: RetryPolicy,
) -> None:
    store = LagoLike()
    client = lago(store, fast_retry)
    old = [lago_event(n) for n in range(0, 10, 2)]
    assert client.send(old).statuses == (D,) * 5
    mixed = [lago_event(n) for n in range(10)]
    report = client.send(mixed)
    assert report.statuses == tuple(DUP if n % 2 == 0 else D for n in range(10))
    assert [outcome.key for outcome in report] == [f"txn-{n}" for n in range(10)]
    assert len(store.stored) == 10


def test_splits_and_retries_keep_every_key_and_stamp_and_the_input_order(fast_retry: RetryPolicy) -> None:
    """A 413 halves, a 503 and a lost answer are retried: each minted key and stamp is sent unchanged."""
    store = LagoLike()
    script: list[Any] = [httpx.Response(413, text="too large"), httpx.Response(503), httpx.ReadError("lost")]

    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.extend(json.loads(request.content)["events"])
        if script:
            answer = script.pop(0)
            if isinstance(answer, BaseException):
                store(request)  # stored, but the answer is lost
                raise answer
            return answer
        return store(request)

    client = lago(handler, fast_retry)
    events = [
        {k: v for k, v in lago_event(n).items() if k not in ("transaction_id", "timestamp")} for n in range(9)
    ]
    events[4]["transaction_id"] = "caller-4"
    report = client.send(events)
    assert set(report.statuses) <= {D, DUP} and len(report.statuses) == 9
    keys = [outcome.key for outcome in report]
    assert keys[4] == "caller-4" and len(set(keys)) == 9
    assert [outcome.event["properties"] for outcome in report] == [{"calls": n} for n in range(9)]
    stamps = {outcome.key: outcome.event["timestamp"] for outcome in report}
    assert all((event["transaction_id"], event["timestamp"]) in stamps.items() for event in seen)
    assert {key for _, key in store.stored} == set(keys)


def test_async_207_narrowing_keeps_order_and_ends_only_the_bad_event_rejected(
    fast_retry: RetryPolicy,
) -> None:
    store = TogaiLike()
    events = [togai_event(n) for n in range(40)]
    events[17]["attributes"] = [{"name": "calls", "value": "1e3"}]

    async def run() -> Any:
        transport = httpx.MockTransport(store)
        async with AsyncTogai(
            "t",
            base_url="http://togai.local",
            transport=transport,
            retry=fast_retry,
            max_batch_events=8,
            validate=False,
        ) as client:
            return await client.send(events, max_in_flight=4)

    report = asyncio.run(run())
    expected = tuple(OutcomeStatus.REJECTED if n == 17 else D for n in range(40))
    assert report.statuses == expected
    assert [outcome.event["attributes"][0]["value"] for outcome in report][:3] == ["0", "1", "2"]
    assert len(store.stored) == 39 and report[17].key not in store.stored
