"""The mock's two Lago event stores: Postgres refuses repeats at write time, ClickHouse deduplicates at read time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from billing_events.mock.__main__ import config_from_env
from billing_events.mock.testing import LAGO_STORES, mock_app

from .mock_support import LAGO, TOKEN, lago_event

ClientFor = Callable[[Starlette], httpx.Client]


def store_client(client_for: ClientFor, lago_store: str) -> httpx.Client:
    return client_for(mock_app(lago_store, token=TOKEN))


def lago_stats(client: httpx.Client) -> dict[str, Any]:
    stats = client.get("/_mock/stats").json()["lago"]
    assert isinstance(stats, dict)
    return stats


def stored(client: httpx.Client) -> list[dict[str, Any]]:
    events = client.get("/_mock/events/lago").json()
    assert isinstance(events, list)
    return events


def test_postgres_refuses_a_repeated_event(client_for: ClientFor) -> None:
    client = store_client(client_for, "postgres")

    first = client.post(f"{LAGO}/events", json={"event": lago_event()})
    again = client.post(f"{LAGO}/events", json={"event": lago_event()})

    assert first.status_code == 200
    assert again.status_code == 422
    assert again.json()["error_details"] == {"transaction_id": ["value_already_exist"]}
    assert lago_stats(client) == {
        "stored": 1,
        "duplicates": 1,
        "requests": 2,
        "arrivals": 1,
        "store": "postgres",
    }


def test_clickhouse_accepts_a_repeated_event_and_counts_it_once(client_for: ClientFor) -> None:
    client = store_client(client_for, "clickhouse")

    first = client.post(f"{LAGO}/events", json={"event": lago_event()})
    again = client.post(f"{LAGO}/events", json={"event": lago_event()})
    batch = client.post(f"{LAGO}/events/batch", json={"events": [lago_event(), lago_event(2)]})

    assert [first.status_code, again.status_code, batch.status_code] == [200, 200, 200]
    assert again.json()["event"]["transaction_id"] == "txn_1"
    assert [event["transaction_id"] for event in batch.json()["events"]] == ["txn_1", "txn_2"]
    assert [event["transaction_id"] for event in stored(client)] == ["txn_1", "txn_2"]
    assert lago_stats(client) == {
        "stored": 2,
        "duplicates": 2,
        "requests": 3,
        "arrivals": 4,
        "store": "clickhouse",
    }


def test_clickhouse_keeps_two_spellings_of_one_instant_as_one_event(client_for: ClientFor) -> None:
    client = store_client(client_for, "clickhouse")

    for timestamp in (1714558530, "1714558530.000", 1714558530.0):
        response = client.post(f"{LAGO}/events", json={"event": lago_event(timestamp=timestamp)})
        assert response.status_code == 200

    assert len(stored(client)) == 1
    assert lago_stats(client)["arrivals"] == 3


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"timestamp": 1714558531}, id="timestamp"),
        pytest.param({"code": "seats"}, id="code"),
        pytest.param({"external_subscription_id": "sub_globex_starter"}, id="subscription"),
    ],
)
def test_clickhouse_keeps_events_whose_read_key_differs(
    client_for: ClientFor, change: dict[str, Any]
) -> None:
    client = store_client(client_for, "clickhouse")

    client.post(f"{LAGO}/events", json={"event": lago_event()})
    client.post(f"{LAGO}/events", json={"event": lago_event(**change)})

    assert len(stored(client)) == 2


def test_clickhouse_bills_a_timestampless_retry_twice(client_for: ClientFor) -> None:
    """A missing timestamp is stamped at reception, so a re-send is a new event on this store."""
    client = store_client(client_for, "clickhouse")
    event = lago_event()
    del event["timestamp"]

    client.post(f"{LAGO}/events", json={"event": event})
    client.post(f"{LAGO}/events", json={"event": event})

    # Both may land in the same millisecond; then the store rightly keeps one. Usually they are two.
    kept = stored(client)
    assert 1 <= len(kept) <= 2
    assert lago_stats(client)["arrivals"] == 2
    assert len({event["timestamp"] for event in kept}) == len(kept)


@pytest.mark.parametrize("lago_store", LAGO_STORES)
def test_a_write_answers_lago_id_and_created_at_only_where_a_row_was_saved(
    client_for: ClientFor, lago_store: str
) -> None:
    """The Postgres store saves the event before answering; the ClickHouse one answers an unsaved event."""
    client = store_client(client_for, lago_store)

    single = client.post(f"{LAGO}/events", json={"event": lago_event()}).json()["event"]
    [batched] = client.post(f"{LAGO}/events/batch", json={"events": [lago_event(2)]}).json()["events"]

    for answered in (single, batched):
        if lago_store == "clickhouse":
            assert (answered["lago_id"], answered["created_at"]) == (None, None)
        else:
            assert answered["lago_id"] and answered["created_at"]
    assert len(stored(client)) == 2


def test_clickhouse_reads_the_latest_write_of_a_repeated_event(client_for: ClientFor) -> None:
    """The server deduplicates at read time keeping the row enriched last: a corrected re-send is billed."""
    client = store_client(client_for, "clickhouse")

    client.post(f"{LAGO}/events", json={"event": lago_event(properties={"gb": 1})})
    client.post(f"{LAGO}/events", json={"event": lago_event(2)})
    client.post(
        f"{LAGO}/events",
        json={"event": lago_event(properties={"gb": 5}, precise_total_amount_cents="12.5")},
    )

    kept = stored(client)
    assert [event["transaction_id"] for event in kept] == ["txn_1", "txn_2"]
    assert kept[0]["properties"] == {"gb": 5}
    assert kept[0]["precise_total_amount_cents"] == "12.5"
    assert lago_stats(client)["stored"] == 2


@pytest.mark.parametrize("lago_store", LAGO_STORES)
def test_a_missing_timestamp_is_the_reception_time_in_milliseconds(
    client_for: ClientFor, lago_store: str
) -> None:
    client = store_client(client_for, lago_store)
    event = lago_event()
    del event["timestamp"]
    start = datetime.now(UTC)
    before = start.replace(microsecond=start.microsecond // 1000 * 1000)

    answered = client.post(f"{LAGO}/events", json={"event": event}).json()["event"]["timestamp"]

    after = datetime.now(UTC)
    assert answered.endswith("Z") and len(answered.rsplit(".", 1)[1]) == 4
    moment = datetime.fromisoformat(answered)
    assert before <= moment <= after


@pytest.mark.parametrize("lago_store", LAGO_STORES)
def test_find_event_answers_the_first_event_found(client_for: ClientFor, lago_store: str) -> None:
    client = store_client(client_for, lago_store)
    client.post(f"{LAGO}/events", json={"event": lago_event(properties={"gb": 1})})
    client.post(
        f"{LAGO}/events",
        json={"event": lago_event(external_subscription_id="sub_globex_starter", properties={"gb": 2})},
    )

    found = client.get(f"{LAGO}/events/txn_1")

    assert found.status_code == 200
    # ClickHouse answers from its raw table, whose properties are a Map(String, String).
    assert found.json()["event"]["properties"] == {"gb": "1" if lago_store == "clickhouse" else 1}
    assert found.json()["event"]["external_subscription_id"] == "sub_acme_growth"


def test_postgres_refuses_one_transaction_id_twice_in_a_batch_even_for_two_subscriptions(
    client_for: ClientFor,
) -> None:
    client = store_client(client_for, "postgres")
    events = [
        lago_event(5),
        lago_event(external_subscription_id="sub_acme_growth"),
        lago_event(external_subscription_id="sub_globex_starter"),
    ]

    response = client.post(f"{LAGO}/events/batch", json={"events": events})

    assert response.status_code == 422
    assert response.json()["error_details"] == {"2": {"transaction_id": ["value_already_exist"]}}
    assert stored(client) == []
    # Sent alone, each of them is stored.
    for event in events:
        assert client.post(f"{LAGO}/events", json={"event": event}).status_code == 200
    assert len(stored(client)) == 3


def test_clickhouse_stores_one_transaction_id_for_two_subscriptions_in_a_batch(client_for: ClientFor) -> None:
    client = store_client(client_for, "clickhouse")
    events = [
        lago_event(external_subscription_id="sub_acme_growth"),
        lago_event(external_subscription_id="sub_globex_starter"),
    ]

    response = client.post(f"{LAGO}/events/batch", json={"events": events})

    assert response.status_code == 200
    assert sorted(event["external_subscription_id"] for event in stored(client)) == [
        "sub_acme_growth",
        "sub_globex_starter",
    ]


@pytest.mark.parametrize("lago_store", LAGO_STORES)
def test_an_invalid_batch_stores_nothing_on_either_store(client_for: ClientFor, lago_store: str) -> None:
    client = store_client(client_for, lago_store)

    response = client.post(
        f"{LAGO}/events/batch", json={"events": [lago_event(), lago_event(2, timestamp="x")]}
    )

    assert response.status_code == 422
    assert response.json()["error_details"] == {"1": {"timestamp": ["invalid_format"]}}
    assert stored(client) == []
    assert lago_stats(client)["arrivals"] == 0


def test_the_admin_route_switches_the_store_and_reset_restores_the_start_up_one(
    client_for: ClientFor,
) -> None:
    client = store_client(client_for, "postgres")
    client.post(f"{LAGO}/events", json={"event": lago_event()})

    switched = client.put("/_mock/lago_store", json={"store": "clickhouse"})
    again = [client.post(f"{LAGO}/events", json={"event": lago_event()}) for _ in range(2)]

    assert switched.json() == {"store": "clickhouse"}
    assert client.get("/_mock/lago_store").json() == {"store": "clickhouse"}
    assert [response.status_code for response in again] == [200, 200]
    assert lago_stats(client)["arrivals"] == 2
    client.post("/_mock/reset")
    assert client.get("/_mock/lago_store").json() == {"store": "postgres"}


@pytest.mark.parametrize("body", [{"store": "mysql"}, {}, ["clickhouse"]])
def test_an_unknown_store_is_refused(client_for: ClientFor, body: object) -> None:
    client = store_client(client_for, "postgres")

    response = client.put("/_mock/lago_store", json=body)

    assert response.status_code == 400
    assert client.get("/_mock/lago_store").json() == {"store": "postgres"}


def test_the_store_comes_from_the_environment() -> None:
    assert config_from_env({"MOCK_LAGO_STORE": "clickhouse"})[0].lago_store == "clickhouse"
    assert config_from_env({})[0].lago_store == "postgres"
    with pytest.raises(ValueError, match="MOCK_LAGO_STORE"):
        config_from_env({"MOCK_LAGO_STORE": "kafka"})
    assert config_from_env({"MOCK_RESTRICTED_TOKEN": "read-only"})[0].restricted_token == "read-only"
    assert config_from_env({})[0].restricted_token is None
