"""Per-event outcomes, chunking, keys and retries of ``send()``, against scripted answers."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from billing_events import (
    AuthError,
    InvalidEventError,
    Lago,
    OutcomeStatus,
    RateLimitedError,
    RejectedError,
    RetryPolicy,
    Togai,
    read_dead_letters,
)
from billing_events.retry import retry_after_seconds
from lago_api.models import EventInputObject
from togai_api.models import Event

from .scripted import Scripted, accepted, lago_422, lago_event, lago_ok, togai_event

D = OutcomeStatus.DELIVERED


def togai(server: Scripted, retry: RetryPolicy, **options: object) -> Togai:
    return Togai("t", base_url="http://togai.local", transport=server.transport(), retry=retry, **options)  # type: ignore[arg-type]


def lago(server: Scripted, retry: RetryPolicy, **options: object) -> Lago:
    return Lago(
        "t", base_url="http://lago.local/api/v1", transport=server.transport(), retry=retry, **options
    )  # type: ignore[arg-type]


# -- chunking -----------------------------------------------------------------


def test_togai_chunks_by_count(fast_retry: RetryPolicy) -> None:
    server = Scripted(default=accepted)
    report = togai(server, fast_retry).send(togai_event(n) for n in range(1201))
    assert [len(keys) for keys in server.sent_keys("id")] == [500, 500, 201]
    assert report.counts[D] == 1201 and report.ok


def test_chunks_by_serialized_bytes(fast_retry: RetryPolicy) -> None:
    server = Scripted(default=accepted)
    report = togai(server, fast_retry, max_batch_bytes=4096).send(togai_event(n) for n in range(100))
    assert report.ok
    assert len(server.requests) > 1
    assert all(len(request.content) <= 4096 for request in server.requests)
    assert sum(len(keys) for keys in server.sent_keys("id")) == 100


def test_an_event_larger_than_a_request_body_is_rejected_before_sending(fast_retry: RetryPolicy) -> None:
    server = Scripted(default=accepted)
    big = togai_event(1, dimensions={f"d{n}": "x" * 200 for n in range(30)})
    report = togai(server, fast_retry, max_batch_bytes=2048).send([big, togai_event(2)])
    assert report.outcomes[0].status is OutcomeStatus.REJECTED
    assert "a request body holds at most 2048" in (report.outcomes[0].reason or "")
    assert report.outcomes[1].status is D


def test_lago_chunks_by_100_and_posts_the_batch_endpoint(fast_retry: RetryPolicy) -> None:
    server = Scripted(default=lago_ok)
    lago(server, fast_retry).send(lago_event(n) for n in range(250))
    assert [len(keys) for keys in server.sent_keys("transaction_id")] == [100, 100, 50]
    assert {request.url.path for request in server.requests} == {"/api/v1/events/batch"}


# -- keys and input forms -----------------------------------------------------


def test_keys_are_assigned_once_and_kept_across_retries(fast_retry: RetryPolicy) -> None:
    server = Scripted(
        httpx.Response(503, json={"message": "busy"}), httpx.ConnectError("refused"), default=accepted
    )
    report = togai(server, fast_retry).send([togai_event(1), togai_event(2, id="caller-key")])
    sent = server.sent_keys("id")
    assert len(sent) == 3
    assert sent[0] == sent[1] == sent[2]
    assert sent[0][1] == "caller-key"
    assert [outcome.key for outcome in report] == sent[0]
    assert [outcome.attempts for outcome in report] == [3, 3]


def test_generated_models_and_plain_dicts_are_both_accepted(fast_retry: RetryPolicy) -> None:
    server = Scripted(default=accepted)
    model = Event.from_dict(togai_event(1, id="from-model"))
    report = togai(server, fast_retry).send([model, togai_event(2, id="from-dict")])
    assert report.ok
    assert [event["id"] for event in server.bodies()[0]["events"]] == ["from-model", "from-dict"]
    lago_server = Scripted(default=lago_ok)
    lago_model = EventInputObject.from_dict(lago_event(3))
    assert lago(lago_server, fast_retry).send([lago_model]).ok


def test_the_callers_dict_is_not_modified(fast_retry: RetryPolicy) -> None:
    event = togai_event(1)
    togai(Scripted(default=accepted), fast_retry).send([event])
    assert "id" not in event


def test_invalid_events_are_rejected_naming_field_and_rule_and_never_sent(fast_retry: RetryPolicy) -> None:
    server = Scripted(default=accepted)
    bad_value = togai_event(2, attributes=[{"name": "calls", "value": "3,5"}])
    report = togai(server, fast_retry).send([togai_event(1), bad_value, "not an event", togai_event(3)])
    assert [o.status for o in report] == [D, OutcomeStatus.REJECTED, OutcomeStatus.REJECTED, D]
    assert report.outcomes[1].reason is not None
    assert report.outcomes[1].reason.startswith("event.attributes[0].value:")
    assert "must be a decimal number" in report.outcomes[1].reason
    assert "must be a mapping" in (report.outcomes[2].reason or "")
    assert len(server.sent_keys("id")[0]) == 2


def test_validate_raises_with_field_and_rule() -> None:
    with pytest.raises(InvalidEventError) as caught:
        Lago("t").validate(lago_event(1, timestamp="2024-05-01T00:00:00Z"))
    assert caught.value.field == "event.timestamp"


@pytest.mark.parametrize(("field", "value"), [("transaction_id", "   "), ("code", " \t\n")])
def test_a_blank_lago_id_or_code_is_refused_locally_by_name(field: str, value: str) -> None:
    """lago-api refuses whitespace only as `value_is_mandatory`: the overlay refuses it before sending."""
    with pytest.raises(InvalidEventError) as caught:
        Lago("t").validate({**lago_event(1), field: value})
    assert caught.value.field == f"event.{field}"
    assert "must be text that is not only whitespace" in str(caught.value)


# -- Togai answers ------------------------------------------------------------


def test_togai_207_rejects_the_named_events_and_delivers_the_rest(fast_retry: RetryPolicy) -> None:
    detail = {"rejectedEvents": [{"index": 1, "id": "x", "message": "attributes: unknown unit"}]}
    server = Scripted(httpx.Response(207, json={"success": False, "details": detail}))
    report = togai(server, fast_retry).send(togai_event(n) for n in range(3))
    assert [o.status for o in report] == [D, OutcomeStatus.REJECTED, D]
    assert report.outcomes[1].reason == "attributes: unknown unit"
    assert isinstance(report.outcomes[1].error, RejectedError)


def test_togai_422_too_large_halves_the_batch_at_once(fast_retry: RetryPolicy) -> None:
    too_large = httpx.Response(422, json={"message": "payload above the supported limit"})
    server = Scripted(too_large, default=accepted)
    client = togai(server, fast_retry)
    report = client.send(togai_event(n) for n in range(10))
    assert report.ok
    assert [len(keys) for keys in server.sent_keys("id")] == [10, 5, 5]
    assert client.stats.retried == 0


def test_a_proxys_413_halves_the_batch_and_a_single_event_it_refuses_ends_failed(
    fast_retry: RetryPolicy,
) -> None:
    # A proxy in front of the provider with a body limit below the provider's: it refuses every
    # request over 3 events. The event itself is within the provider's limits: nothing stored it, and
    # a replay through a fixed proxy must send it again, so it is failed, not rejected.
    def proxy(request: httpx.Request) -> httpx.Response:
        if len(json.loads(request.content)["events"]) > 3 or b"through-no-proxy" in request.content:
            return httpx.Response(413, text="<html><body>413 Request Entity Too Large</body></html>")
        return accepted(request)

    server = Scripted(default=proxy)
    report = togai(server, fast_retry).send(
        [togai_event(n) for n in range(7)] + [dict(togai_event(7), accountId="through-no-proxy")]
    )
    assert [o.status for o in report.outcomes] == [D] * 7 + [OutcomeStatus.FAILED]
    assert "413" in (report.outcomes[7].reason or "") or "Too Large" in (report.outcomes[7].reason or "")


def test_togai_400_rejects_the_batch(fast_retry: RetryPolicy) -> None:
    server = Scripted(httpx.Response(400, json={"message": "no acceptable event"}))
    report = togai(server, fast_retry).send([togai_event(1)])
    assert report.outcomes[0].status is OutcomeStatus.REJECTED
    assert report.outcomes[0].reason == "no acceptable event"


# -- Lago answers -------------------------------------------------------------


def test_lago_one_bad_event_in_100_gives_99_delivered_and_1_rejected(fast_retry: RetryPolicy) -> None:
    def all_or_nothing(request: httpx.Request) -> httpx.Response:
        events = json.loads(request.content)["events"]
        bad = {str(i): {"code": ["value_is_invalid"]} for i, e in enumerate(events) if e["code"] == "broken"}
        return lago_422(bad) if bad else lago_ok(request)

    server = Scripted(default=all_or_nothing)
    client = lago(server, RetryPolicy(initial_delay=1000, max_delay=1000))
    events = [lago_event(n, code="broken" if n == 42 else "api_calls") for n in range(100)]
    report = client.send(events)
    assert report.counts[D] == 99
    assert report.outcomes[42].status is OutcomeStatus.REJECTED
    assert report.outcomes[42].reason == "code: value_is_invalid"
    # The valid rest went out again at once (no backoff: the policy would wait 1000 s).
    assert [len(keys) for keys in server.sent_keys("transaction_id")] == [100, 99]
    assert client.stats.retried == 0


def test_lago_value_already_exist_counts_as_delivered(fast_retry: RetryPolicy) -> None:
    server = Scripted(
        lago_422({"0": {"transaction_id": ["value_already_exist"]}, "2": {"timestamp": ["invalid_format"]}}),
        default=lago_ok,
    )
    report = lago(server, fast_retry).send(lago_event(n) for n in range(4))
    assert [o.status for o in report] == [OutcomeStatus.DUPLICATE, D, OutcomeStatus.REJECTED, D]
    assert report.ok is False
    assert report.outcomes[0].delivered
    assert server.sent_keys("transaction_id")[1] == ["txn-1", "txn-3"]


def test_lago_too_many_events_halves_the_batch(fast_retry: RetryPolicy) -> None:
    server = Scripted(lago_422({"events": ["too_many_events"]}), default=lago_ok)
    report = lago(server, fast_retry).send(lago_event(n) for n in range(100))
    assert report.ok
    assert [len(keys) for keys in server.sent_keys("transaction_id")] == [100, 50, 50]


def test_lago_unattributable_422_is_narrowed_down_by_halving(fast_retry: RetryPolicy) -> None:
    def expression_error(request: httpx.Request) -> httpx.Response:
        events = json.loads(request.content)["events"]
        if any(e["code"] == "bad_expression" for e in events):
            return lago_422("expression failed: undefined variable")
        return lago_ok(request)

    server = Scripted(default=expression_error)
    events = [lago_event(n, code="bad_expression" if n == 5 else "api_calls") for n in range(8)]
    report = lago(server, fast_retry).send(events)
    assert report.counts[D] == 7
    assert report.outcomes[5].status is OutcomeStatus.REJECTED
    assert report.outcomes[5].reason == "expression failed: undefined variable"


# -- retries ------------------------------------------------------------------


def test_retryable_statuses_and_transport_errors_are_retried(fast_retry: RetryPolicy) -> None:
    script = [httpx.Response(status, json={"message": "x"}) for status in (408, 429, 500, 502)]
    server = Scripted(*script, httpx.ReadTimeout("slow"), default=accepted)
    client = togai(
        server, RetryPolicy(max_attempts=6, initial_delay=0.001, max_delay=0.001, max_retry_after=0)
    )
    report = client.send([togai_event(1)])
    assert report.ok
    assert len(server.requests) == 6
    assert client.stats.retried == 5


def test_retries_stop_at_the_attempt_cap_and_fail_with_the_last_error(fast_retry: RetryPolicy) -> None:
    server = Scripted(
        default=httpx.Response(429, json={"message": "slow down"}, headers={"Retry-After": "0"})
    )
    client = togai(server, RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.001))
    report = client.send([togai_event(1)])
    outcome = report.outcomes[0]
    assert outcome.status is OutcomeStatus.FAILED
    assert outcome.attempts == 3
    assert len(server.requests) == 3
    assert isinstance(outcome.error, RateLimitedError)
    assert outcome.reason is not None and outcome.reason.startswith("retries exhausted")


def test_retries_stop_at_the_deadline() -> None:
    server = Scripted(default=httpx.Response(503, json={"message": "down"}, headers={"Retry-After": "5"}))
    policy = RetryPolicy(max_attempts=100, deadline=0.2, initial_delay=0.001, max_retry_after=5)
    report = togai(server, policy).send([togai_event(1)])
    # The first wait (5 s, from Retry-After) would cross the 0.2 s deadline: no second attempt.
    # A 503 may come after the store, so the event ends unknown, not failed.
    assert report.outcomes[0].status is OutcomeStatus.UNKNOWN
    assert len(server.requests) == 1


def test_auth_errors_are_not_retried(fast_retry: RetryPolicy) -> None:
    server = Scripted(default=httpx.Response(401, json={"status": 401, "error": "Unauthorized"}))
    report = lago(server, fast_retry).send([lago_event(1)])
    assert report.outcomes[0].status is OutcomeStatus.FAILED
    assert isinstance(report.outcomes[0].error, AuthError)
    assert report.outcomes[0].error.status == 401
    assert len(server.requests) == 1
    with pytest.raises(AuthError, match="HTTP 401"):
        report.raise_for_failures()


def test_backoff_honours_server_hints_as_a_capped_minimum() -> None:
    policy = RetryPolicy(initial_delay=0.1, max_delay=1.0, max_retry_after=10.0)
    assert all(policy.backoff(1, 4.0) >= 4.0 for _ in range(50))
    assert all(policy.backoff(1, 400.0) == 10.0 for _ in range(50))
    assert all(0 <= policy.backoff(20, None) <= 1.0 for _ in range(50))


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "Thu, 01 Jan 1970 00:00:30 GMT"}, 20.0),
        ({"x-ratelimit-reset": "3"}, 3.0),
        ({"x-ratelimit-reset": "1000000030"}, 20.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_server_wait_hints_are_parsed(headers: dict[str, str], seconds: float | None) -> None:
    now = 1_000_000_010.0 if "x-ratelimit-reset" in headers else 10.0
    assert retry_after_seconds(httpx.Headers(headers), now=now) == seconds


# -- dead letters -------------------------------------------------------------


def test_rejected_and_failed_events_are_dead_lettered_and_can_be_replayed(
    tmp_path: Path, fast_retry: RetryPolicy
) -> None:
    path = tmp_path / "dead.jsonl"
    seen: list[str] = []
    detail = {"rejectedEvents": [{"index": 0, "message": "bad"}]}
    server = Scripted(httpx.Response(207, json={"success": False, "details": detail}), default=accepted)
    client = togai(server, fast_retry, dead_letter_path=path, on_dead_letter=lambda o: seen.append(o.key))
    report = client.send([togai_event(1, id="k-1"), togai_event(2, id="k-2"), {"schemaName": "x"}])
    letters = {letter.key: letter for letter in read_dead_letters(path)}
    assert [letter.status for letter in letters.values()] == ["rejected", "rejected"]
    assert letters["k-1"].reason == "bad"
    assert letters["k-1"].event["id"] == "k-1"
    assert sorted(seen) == sorted(o.key for o in report if not o.delivered)
    # Replaying re-sends the file's events with their keys; the invalid one is rejected again locally.
    replayed = client.replay(path)
    assert [o.key for o in replayed if o.delivered] == ["k-1"]
    assert server.sent_keys("id")[-1] == ["k-1"]


def test_a_broken_dead_letter_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    path.write_text('{"provider": "togai"}\n')
    bad: list[str] = []
    assert list(read_dead_letters(path, lambda line: bad.append(str(line)))) == []
    assert len(bad) == 1
    assert "dead.jsonl:1: not a dead letter (missing field 'key')" in bad[0]


def test_find_event_retries_a_429_and_honours_its_hint() -> None:
    stored = {
        "event": {
            "transaction_id": "t-1",
            "lago_customer_id": None,
            "code": "api_calls",
            "timestamp": "2024-05-01T10:15:30.000Z",
            "lago_subscription_id": None,
            "external_subscription_id": "sub-1",
        }
    }
    server = Scripted(
        httpx.Response(
            429, json={"status": 429, "error": "Too Many Requests"}, headers={"X-RateLimit-Reset": "0"}
        ),
        httpx.Response(503, json={"status": 503, "error": "Service Unavailable"}),
        default=httpx.Response(200, json=stored),
    )
    client = lago(server, RetryPolicy(initial_delay=0.001, max_delay=0.001))
    assert client.find_event("t-1").external_subscription_id == "sub-1"
    assert len(server.requests) == 3


def test_find_event_gives_up_with_the_typed_error() -> None:
    server = Scripted(default=httpx.Response(429, json={"status": 429, "error": "Too Many Requests"}))
    client = lago(server, RetryPolicy(max_attempts=2, initial_delay=0.001, max_delay=0.001))
    with pytest.raises(RateLimitedError, match="HTTP 429"):
        client.find_event("t-1")
    assert len(server.requests) == 2


def test_an_integer_too_long_to_write_is_rejected_by_name_and_spares_the_other_events() -> None:
    """Python refuses to write an int of more than 4,300 digits: the event holding one is rejected with its
    field and rule, and the good event beside it is delivered (the message once called str() on it, and the
    ValueError took the whole send down)."""
    server = Scripted(default=httpx.Response(202, json={"success": True}))
    client = Togai("t", transport=server.transport())
    huge = togai_event(2)
    huge["accountId"] = 10**5000
    report = client.send([togai_event(1), huge])
    assert [outcome.status for outcome in report] == [OutcomeStatus.DELIVERED, OutcomeStatus.REJECTED]
    assert "event.accountId" in (report[1].reason or "")
    assert "bits" in (report[1].reason or "") and len(report[1].reason or "") < 400
