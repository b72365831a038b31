"""Review r31 of the specs: Lago events the overlay's schema bundle lets through, though Lago's Postgres store
cannot store them (a 500 that takes the whole batch down) or can never bill them.

Facts from lago-api: `events.precise_total_amount_cents` is `decimal(40, 15)` (migration
`AddPreciseTotalAmountCentsToEvent`, and `app/models/event.rb`'s schema notes), so a value of 10**25 or more
overflows on `event.save!`, which neither `Events::CreateService` nor `Events::CreateBatchService` rescues (the
README's Specs section says so itself: "the server's Postgres store fails with a 500", and the mock refuses
it as `value_is_invalid`). Postgres cannot hold U+0000 in a `varchar` or a `jsonb` value either. A subscription's
`external_id` is validated with `presence: true` (`app/models/subscription.rb`), so no subscription has a blank
one.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
import pytest

from billing_events import InvalidEventError, Lago, OutcomeStatus, RetryPolicy

QUICK = RetryPolicy(
    max_attempts=2, deadline=10.0, initial_delay=0.001, max_delay=0.002, max_retry_after=0.002
)
# The largest magnitude decimal(40, 15) holds is just below 10**25.
OVERFLOW = Decimal(10) ** 25


def lago_event(n: int = 1, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "transaction_id": f"txn_{n}",
        "external_subscription_id": "sub_acme_growth",
        "code": "api_calls",
        "timestamp": 1714558530,
    }
    event.update(changes)
    return event


def _holds_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(map(_holds_nul, value))
    return False


def _postgres_fails(event: dict[str, Any]) -> bool:
    """What makes lago-api's `event.save!` raise on the Postgres store (not rescued: a 500)."""
    amount = event.get("precise_total_amount_cents")
    if amount is not None:
        try:
            if abs(Decimal(str(amount))) >= OVERFLOW:
                return True  # PG::NumericValueOutOfRange: numeric field overflow
        except InvalidOperation:
            pass
    return _holds_nul(event)  # text and jsonb cannot hold U+0000


def postgres_lago(calls: list[int]) -> httpx.MockTransport:
    """POST /events/batch as lago-api's Postgres store answers it: a 500 when a row cannot be saved (the
    transaction rolls back, nothing is stored), else 200 with the events echoed."""

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        events = json.loads(request.content)["events"]
        if any(_postgres_fails(event) for event in events):
            return httpx.Response(500, json={"status": 500, "error": "Internal Server Error"})
        echoed = [
            {
                "lago_id": f"id-{index}",
                "transaction_id": event["transaction_id"],
                "lago_customer_id": None,
                "code": event["code"],
                "timestamp": "2024-05-01T10:15:30.000Z",
                "lago_subscription_id": None,
                "external_subscription_id": event["external_subscription_id"],
                "precise_total_amount_cents": None,
                "properties": event.get("properties") or {},
                "created_at": "2024-05-01T10:15:31Z",
            }
            for index, event in enumerate(events)
        ]
        return httpx.Response(200, json={"events": echoed})

    return httpx.MockTransport(handle)


@pytest.mark.parametrize(
    "amount",
    [
        pytest.param("1" * 26, id="26-digit-string"),
        pytest.param("-" + "9" * 26 + ".5", id="negative-string"),
        pytest.param(1e30, id="float"),
        pytest.param(-1e25, id="negative-float"),
    ],
)
def test_lago_amount_the_column_cannot_hold_is_refused_naming_the_field(amount: object) -> None:
    # (25 digits before the point fit the column: -9...9.5 with 25 nines is stored, as the mock does.)
    """A user sees validate() accept a `precise_total_amount_cents` of 26 digits, which Lago's Postgres store
    cannot save (numeric field overflow, a 500; the mock answers it `value_is_invalid`). They should see an
    InvalidEventError naming `precise_total_amount_cents` and its range, before anything is sent."""
    with Lago("t") as client, pytest.raises(InvalidEventError) as caught:
        client.validate(lago_event(precise_total_amount_cents=amount))

    assert "precise_total_amount_cents" in caught.value.field


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"transaction_id": "txn\x001"}, "transaction_id", id="transaction_id"),
        pytest.param({"code": "api\x00calls"}, "code", id="code"),
        pytest.param({"properties": {"region": "eu\x00west"}}, "properties", id="property-value"),
    ],
)
def test_lago_nul_character_is_refused_naming_the_field(changes: dict[str, Any], field: str) -> None:
    """A user sees validate() accept an event holding U+0000 (a C string's end, read from a binary
    column, say); Lago's Postgres store cannot save it (`string contains null byte` / `unsupported Unicode
    escape sequence`), a 500. They should see an InvalidEventError naming the field."""
    with Lago("t") as client, pytest.raises(InvalidEventError) as caught:
        client.validate(lago_event(**changes))

    assert field in f"{caught.value.field} {caught.value.rule}"


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"precise_total_amount_cents": "1" * 26}, id="amount-overflow"),
        pytest.param({"properties": {"region": "eu\x00west"}}, id="nul-in-property"),
    ],
)
def test_lago_unstorable_event_does_not_take_its_batch_down(bad: dict[str, Any]) -> None:
    """A user sends 3 events, one of which lago-api's Postgres store cannot save. They see all 3 end
    `unknown` (the batch answers 500 on every attempt, and nothing was stored). They should see the 2
    good events delivered and the bad one rejected, naming its field: bad input never takes good events
    down with it."""
    calls: list[int] = []
    events = [lago_event(1), lago_event(2, **bad), lago_event(3)]
    with Lago("t", base_url="http://lago.test/api/v1", transport=postgres_lago(calls), retry=QUICK) as client:
        report = client.send(events)

    statuses = [outcome.status for outcome in report.outcomes]
    assert statuses == [OutcomeStatus.DELIVERED, OutcomeStatus.REJECTED, OutcomeStatus.DELIVERED]


@pytest.mark.parametrize("subscription", [" ", "\t", "\u00a0"], ids=["space", "tab", "nbsp"])
def test_lago_blank_external_subscription_id_is_refused_as_the_empty_one(subscription: str) -> None:
    """A user sees validate() refuse `external_subscription_id: ""` (the README's table: Lago stores it but can
    never bill it) and accept `" "`, which Lago stores just the same and can never bill either: no
    subscription has a blank external_id (`validates :external_id, presence: true`). The event is delivered
    and never billed, without a word. They should see an InvalidEventError naming the field, as for `""`
    and as for a blank `transaction_id` or `code`."""
    with Lago("t") as client:
        with pytest.raises(InvalidEventError) as empty:
            client.validate(lago_event(external_subscription_id=""))
        assert "external_subscription_id" in empty.value.field

        with pytest.raises(InvalidEventError) as blank:
            client.validate(lago_event(external_subscription_id=subscription))

    assert "external_subscription_id" in blank.value.field


def test_lago_text_that_spells_a_backslash_u0000_is_not_a_nul() -> None:
    """The NUL check searches the event's JSON for its escape; a text holding the six characters \\u0000 (a
    backslash, then u0000) is written with its backslash escaped, and must go out as any other text."""
    event = lago_event(properties={"path": "C:\\u0000", "k\\u0000": 1})
    with Lago("t") as client:
        assert client.validate(event) == event


def test_lago_nul_in_a_property_key_is_refused_naming_the_properties() -> None:
    with Lago("t") as client, pytest.raises(InvalidEventError) as caught:
        client.validate(lago_event(properties={"ok": 1, "bad\x00key": 2}))

    assert caught.value.field == "event.properties (a key)"
    assert "U+0000" in caught.value.rule


@pytest.mark.parametrize(("kind", "status"), [("postgres", 422), ("clickhouse", 200)])
def test_the_mock_refuses_nul_where_its_store_cannot_save_it(kind: str, status: int) -> None:
    """The mock answers U+0000 as Lago's stores can take it: Postgres cannot (the server fails with a 500;
    the mock answers 422 naming the field), ClickHouse stores it. Sent raw, past the overlay's own check."""
    from billing_events.mock.testing import mock_app, sync_transport

    event = {
        "transaction_id": "t-1",
        "external_subscription_id": "sub_1",
        "code": "api_calls",
        "timestamp": 1714558530,
        "properties": {"note": "a\x00b"},
    }
    transport = sync_transport(mock_app(kind, token="t"))
    with httpx.Client(transport=transport, base_url="http://mock") as http:
        answer = http.post(
            "/lago/api/v1/events/batch", json={"events": [event]}, headers={"Authorization": "Bearer t"}
        )

    assert answer.status_code == status, answer.text
    if status == 422:
        assert answer.json()["error_details"] == {"0": {"properties": ["value_is_invalid"]}}
