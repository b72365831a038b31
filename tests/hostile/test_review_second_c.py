"""Review (second reading, round 29): the new secret spellings and Lago's empty or null subscription.

The xfail tests are defects found by the review; the others pin the important cases that hold.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from billing_events import ConfigurationError, Lago, RetryPolicy, Togai
from billing_events.mock.testing import mock_app, sync_transport
from hostile.test_review_secrets import send_one

FAST = RetryPolicy(max_attempts=1, deadline=5.0, initial_delay=0.001, max_delay=0.001)
# A token with the characters JSON encoders escape in their own ways ('/', '&').
TOKEN = "canary/tok&en-5c1e9a7b3d0f"
MOCK_TOKEN = "second-c-token"
LAGO = "/lago/api/v1"


class _Chunks(httpx.SyncByteStream):
    """A body sent ``size`` bytes at a time."""

    def __init__(self, body: bytes, size: int) -> None:
        self.body, self.size = body, size

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.body), self.size):
            yield self.body[start : start + self.size]


# -- Defects -----------------------------------------------------------------------------------------

# JSON escapes of a UTF-8 body are scrubbed (README: "A body's JSON escapes count in any spelling ...
# and so does a body in UTF-16 or UTF-32"), but the wide forms are only the literal spellings.
WIDE_ESCAPED = {
    # Rails' encoder writes '&' as \u0026; the body sent in UTF-16 with its BOM.
    "rails_u0026_utf16": lambda text: text.replace("&", "\\u0026").encode("utf-16"),
    # PHP's json_encode writes '/' as \/; the body sent in UTF-16-LE without a BOM (json.loads detects it).
    "php_slash_utf16le": lambda text: text.replace("/", "\\/").encode("utf-16-le"),
    # Every character as \uXXXX, in UTF-32.
    "all_u_escapes_utf32": lambda text: json.dumps(text).encode("utf-32"),
}


@pytest.mark.parametrize("spelling", sorted(WIDE_ESCAPED))
def test_a_token_json_escaped_in_a_utf16_or_utf32_body_is_scrubbed(spelling: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        said = request.headers["authorization"]
        text = json.dumps({"message": f"invalid credentials: {said}"}, ensure_ascii=False)
        if spelling == "all_u_escapes_utf32":
            text = json.dumps({"message": f"invalid credentials: {said}"}, ensure_ascii=True)
            text = text.replace(TOKEN, "".join(f"\\u{ord(char):04x}" for char in TOKEN))
            body = text.encode("utf-32")
        else:
            body = WIDE_ESCAPED[spelling](text)
        assert json.loads(body)["message"].endswith(TOKEN)  # what the library reads is the token itself
        return httpx.Response(401, content=body, headers={"Content-Type": "application/json"})

    outcome, texts = send_one(Togai, answer, TOKEN)

    assert not outcome.delivered
    assert "invalid credentials" in texts  # the body was read
    assert TOKEN not in texts


def test_a_budget_url_password_holding_an_at_sign_is_masked_whole() -> None:
    # urlsplit takes the userinfo up to the last '@'; the full-width '#' makes it refuse the netloc (NFKC),
    # quoting it whole in its message.
    url = "redis://worker:hunter2@vault\uff03key@redis.internal:6379/0"
    with pytest.raises(ConfigurationError) as refused:
        Lago(TOKEN, base_url="http://127.0.0.1:9", max_requests_per_second=5, rate_budget=url)

    shown = f"{refused.value} {refused.value!r}"
    assert "hunter2" not in shown
    assert "vault\uff03key" not in shown


def _lago_event(subscription: str | None) -> dict[str, Any]:
    return {
        "transaction_id": "tx-sub-blank",
        "external_subscription_id": subscription,
        "code": "storage_gb",
        "timestamp": 1714558530,
        "properties": {"gb": 1},
    }


@pytest.fixture
def lago_store() -> Iterator[Callable[[str], httpx.Client]]:
    clients: list[httpx.Client] = []

    def build(kind: str) -> httpx.Client:
        client = httpx.Client(
            transport=sync_transport(mock_app(kind, token=MOCK_TOKEN)),
            base_url="http://mock",
            headers={"Authorization": f"Bearer {MOCK_TOKEN}"},
        )
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


def test_clickhouse_counts_a_null_and_an_empty_subscription_as_one_event(
    lago_store: Callable[[str], httpx.Client],
) -> None:
    # lago-api db/clickhouse_migrate/cloud/01_events_raw.sql: `external_subscription_id String` (not Nullable),
    # ORDER BY (organization_id, external_subscription_id, code, transaction_id, timestamp); the Kafka payload
    # (app/services/events/kafka_producer_service.rb) sends nil as null, which a String column reads as "".
    client = lago_store("clickhouse")
    assert client.post(f"{LAGO}/events", json={"event": _lago_event(None)}).status_code == 200
    assert client.post(f"{LAGO}/events", json={"event": _lago_event("")}).status_code == 200

    # The mock itself answers the raw row with "" for the null one.
    assert client.get(f"{LAGO}/events/tx-sub-blank").json()["event"]["external_subscription_id"] == ""
    stats = client.get("/_mock/stats").json()["lago"]
    assert (stats["stored"], stats["duplicates"], stats["arrivals"]) == (1, 1, 2)


# -- What holds --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 7])
@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-32-le"])
def test_a_token_cut_across_chunks_of_a_utf16_or_utf32_body_is_scrubbed(encoding: str, size: int) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        said = request.headers["authorization"]
        text = json.dumps({"message": "x" * 101 + f" invalid credentials: {said}"}, ensure_ascii=False)
        return httpx.Response(
            401, stream=_Chunks(text.encode(encoding), size), headers={"Content-Type": "application/json"}
        )

    outcome, texts = send_one(Lago, answer, TOKEN)

    assert not outcome.delivered
    assert "invalid credentials: Bearer ***" in texts  # '***' written in the body's own encoding
    assert TOKEN not in texts


@pytest.mark.parametrize("kind", ["postgres", "clickhouse"])
@pytest.mark.parametrize("subscription", [None, ""])
def test_an_estimate_for_a_blank_subscription_is_not_found(
    lago_store: Callable[[str], httpx.Client], kind: str, subscription: str | None
) -> None:
    # lago-api Events::ValidateCreationService: a blank subscription is answered 404 subscription_not_found.
    client = lago_store(kind)
    answer = client.post(f"{LAGO}/events/estimate_fees", json={"event": _lago_event(subscription)})

    assert answer.status_code == 404
    assert answer.json()["code"] == "subscription_not_found"


def test_postgres_refuses_a_repeated_empty_subscription_and_keeps_null_ones_apart(
    lago_store: Callable[[str], httpx.Client],
) -> None:
    # lago-api app/models/event.rb: index_unique_transaction_id (organization_id, external_subscription_id,
    # transaction_id) UNIQUE: "" repeats, NULLs are distinct.
    client = lago_store("postgres")
    codes = [
        client.post(f"{LAGO}/events", json={"event": _lago_event(subscription)}).status_code
        for subscription in (None, None, "", "")
    ]

    assert codes == [200, 200, 200, 422]
    found = client.get(f"{LAGO}/events/tx-sub-blank").json()["event"]
    assert found["external_subscription_id"] is None  # the first one stored, as sent
