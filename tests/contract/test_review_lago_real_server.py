"""Lago as its server really behaves (getlago/lago-api), against our mock, spec and overlay.

Sources read (getlago/lago-api unless said otherwise):
- app/services/events/create_service.rb, app/services/events/create_batch_service.rb (the insert_all
  version): `Time.zone.at(BigDecimal(params[:timestamp].to_s))`; PR #5651 "fix(events): Preserve
  timestamp precision" (merged 2026-06-04) replaced `Float()` by `BigDecimal` in both, so
  "1780586634.1" is no longer answered as ...54.099.
- config/routes: `resources :events, only: %i[create show index], constraints: {id: /[^\\/]+/}`: any id
  without a raw "/" is routed to `show`, "%2E" included, and Journey unescapes it to ".".
- app/controllers/api/base_controller.rb: `authorize` answers 403
  `{"status":403,"error":"Forbidden","code":"<read|write>_action_not_allowed_for_event"}`, `mode` being
  "read" for GET and "write" for any other method (estimate_fees is a POST).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from billing_events import AuthError, InvalidEventError, Lago, NotFoundError, OutcomeStatus, RetryPolicy
from billing_events.mock.testing import mock_app, sync_transport

TOKEN = "review-lago-token"
READ_ONLY = "review-lago-read-only"
BASE = "http://mock/lago/api/v1"
ONCE = RetryPolicy(max_attempts=1, deadline=10.0, initial_delay=0.001, max_delay=0.001)


def raw_client(app: Starlette, token: str = TOKEN) -> httpx.Client:
    return httpx.Client(
        transport=sync_transport(app), base_url=BASE, headers={"Authorization": f"Bearer {token}"}
    )


def lago_on(app: Starlette, token: str = TOKEN) -> Lago:
    return Lago(token, base_url=BASE, transport=sync_transport(app), retry=ONCE)


def event(transaction_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "transaction_id": transaction_id,
        "external_subscription_id": "sub_acme_growth",
        "code": "storage_gb",
        "timestamp": 1714558530,
        "properties": {"gb": 1},
    }
    body.update(changes)
    return body


# -- timestamps: the server reads the decimal text exactly -----------------------------------------


@pytest.mark.parametrize("store", ["postgres", "clickhouse"])
@pytest.mark.parametrize(
    ("sent", "answered"),
    [
        ("1714558530.123", "2024-05-01T10:15:30.123Z"),
        (1714558530.123, "2024-05-01T10:15:30.123Z"),
        ("1780586634.1", "2026-06-04T15:23:54.100Z"),  # the example of lago-api PR #5651
    ],
)
def test_a_decimal_timestamp_is_answered_to_the_millisecond_it_was_sent(
    store: str, sent: object, answered: str
) -> None:
    app = mock_app(store, token=TOKEN)
    with raw_client(app) as client:
        single = client.post("/events", json={"event": event("single", timestamp=sent)})
        batch = client.post("/events/batch", json={"events": [event("batched", timestamp=sent)]})
    assert single.status_code == 200, single.text
    assert batch.status_code == 200, batch.text
    assert single.json()["event"]["timestamp"] == answered
    assert batch.json()["events"][0]["timestamp"] == answered


def test_whole_and_binary_exact_timestamps_keep_their_milliseconds() -> None:
    """values a double carries exactly (whole seconds, .25, .5) come back unchanged."""
    app = mock_app("postgres", token=TOKEN)
    with raw_client(app) as client:
        answer = client.post(
            "/events/batch",
            json={"events": [event("a", timestamp=1714558530), event("b", timestamp="1714558530.250")]},
        )
    assert [e["timestamp"] for e in answer.json()["events"]] == [
        "2024-05-01T10:15:30.000Z",
        "2024-05-01T10:15:30.250Z",
    ]


# -- findEvent with ids that need escaping ------------------------------------------------------------


@pytest.mark.parametrize("transaction_id", [".", ".."])
def test_find_event_reads_back_an_event_whose_id_is_a_dot_segment(transaction_id: str) -> None:
    app = mock_app("postgres", token=TOKEN)
    with lago_on(app) as lago:
        report = lago.send([event(transaction_id)])
        assert [o.status for o in report] == [OutcomeStatus.DELIVERED]
        found = lago.find_event(transaction_id)
    assert found.transaction_id == transaction_id


def test_find_event_refuses_an_empty_id_without_a_request() -> None:
    """``/events/`` is lago-api's events list, whose answer no EventResponse reads: it was retried, then a
    ServerError ("unreadable answer"). An empty id names no event: refused before anything is sent."""
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"events": [], "meta": {"current_page": 1}})

    with (
        Lago(TOKEN, base_url=BASE, transport=httpx.MockTransport(answer), retry=ONCE) as lago,
        pytest.raises(InvalidEventError, match="transaction_id: must be a non-empty string"),
    ):
        lago.find_event("")
    assert seen == []


def test_the_server_side_route_of_an_escaped_dot_id_works_on_the_mock() -> None:
    """The mock routes /events/%2E as Rails does."""
    app = mock_app("postgres", token=TOKEN)
    with raw_client(app) as client:
        assert client.post("/events", json={"event": event(".")}).status_code == 200
        answer = client.get("/events/%2E")
    assert answer.status_code == 200
    assert answer.json()["event"]["transaction_id"] == "."


@pytest.mark.parametrize("transaction_id", ["a+b", "100%", "txn/é ü?#&=", "order.json", "%2F"])
def test_find_event_escapes_ids_as_rails_unescapes_them(transaction_id: str) -> None:
    """'+' stays '+', '%' and '/' are escaped, a dot inside an id is no format suffix."""
    app = mock_app("clickhouse", token=TOKEN)
    with lago_on(app) as lago:
        assert lago.send([event(transaction_id)]).ok
        assert lago.find_event(transaction_id).transaction_id == transaction_id
        with pytest.raises(NotFoundError, match="event_not_found"):
            lago.find_event(transaction_id + "-never-sent")


# -- 403 on the read and estimate operations ----------------------------------------------------------


def test_estimate_fees_with_a_key_that_may_not_write_raises_auth_error() -> None:
    app = mock_app("postgres", token=TOKEN, restricted_token=READ_ONLY)
    with lago_on(app, READ_ONLY) as lago, pytest.raises(AuthError) as raised:
        lago.estimate_fees("seats", "sub_acme_growth", {"seats": 2})
    assert raised.value.status == 403
    assert "write_action_not_allowed_for_event" in str(raised.value)


def test_find_event_with_a_key_that_may_not_read_raises_auth_error() -> None:
    def forbidden(request: httpx.Request) -> httpx.Response:
        mode = "read" if request.method == "GET" else "write"
        body = {"status": 403, "error": "Forbidden", "code": f"{mode}_action_not_allowed_for_event"}
        return httpx.Response(403, json=body)

    lago = Lago(TOKEN, base_url=BASE, transport=httpx.MockTransport(forbidden), retry=ONCE)
    with lago, pytest.raises(AuthError) as raised:
        lago.find_event("txn-1")
    assert raised.value.status == 403
    assert "read_action_not_allowed_for_event" in str(raised.value)
    assert TOKEN not in str(raised.value)


def test_sending_with_a_key_that_may_not_write_fails_every_event_with_auth_error() -> None:
    """a 403 on /events/batch is failed (never stored), with an AuthError, token kept out."""
    app = mock_app("postgres", token=TOKEN, restricted_token=READ_ONLY)
    with lago_on(app, READ_ONLY) as lago:
        report = lago.send([event("w-1"), event("w-2")])
    assert [o.status for o in report] == [OutcomeStatus.FAILED] * 2
    assert all(isinstance(o.error, AuthError) and o.error.status == 403 for o in report)
    assert all(READ_ONLY not in (o.reason or "") for o in report)
