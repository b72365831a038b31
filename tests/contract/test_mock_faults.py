"""Fault injection and the admin routes: each fault kind, seeding, run-time changes and reset."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from billing_events.mock import FaultConfig, MockConfig, create_app, gateway
from billing_events.mock.__main__ import config_from_env
from billing_events.mock.config import FaultConfigError

from .mock_support import LAGO, TOGAI, TOKEN, lago_event, togai_event

ClientFor = Callable[[Starlette], httpx.Client]


def faulty_client(client_for: ClientFor, **faults: Any) -> httpx.Client:
    return client_for(create_app(MockConfig(token=TOKEN, faults=FaultConfig(**faults))))


def test_a_throttled_togai_request_carries_retry_after(client_for: ClientFor) -> None:
    client = faulty_client(client_for, rate_429=1.0, retry_after=7)

    response = client.post(f"{TOGAI}/ingest", json={"event": togai_event()})

    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json() == {"message": "Request throttled"}
    assert client.get("/_mock/events/togai").json() == []


@pytest.mark.parametrize(
    ("path", "limit"), [("/events", "500"), ("/events/batch", "500"), ("/events/estimate_fees", "50")]
)
def test_a_throttled_lago_request_carries_the_rate_limit_headers(
    client_for: ClientFor, path: str, limit: str
) -> None:
    client = faulty_client(client_for, rate_429=1.0, retry_after=3)
    body = {"events": [lago_event()]} if path == "/events/batch" else {"event": lago_event()}

    response = client.post(f"{LAGO}{path}", json=body)

    assert response.status_code == 429
    assert response.json() == {"status": 429, "error": "Too Many Requests"}
    assert "retry-after" not in response.headers  # Lago documents X-RateLimit-Reset as the wait
    assert response.headers["x-ratelimit-limit"] == limit
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert response.headers["x-ratelimit-reset"] == "3"
    assert client.get("/_mock/events/lago").json() == []


def test_an_unavailable_answer_stores_nothing(client_for: ClientFor) -> None:
    client = faulty_client(client_for, rate_503=1.0)

    togai = client.post(f"{TOGAI}/ingestBatch", json={"events": [togai_event()]})
    lago = client.post(f"{LAGO}/events/batch", json={"events": [lago_event()]})

    assert (togai.status_code, togai.json()) == (503, {"message": "Service unavailable"})
    assert (lago.status_code, lago.json()) == (503, {"status": 503, "error": "Service Unavailable"})
    assert togai.headers["retry-after"] == "1"
    assert client.get("/_mock/stats").json()["togai"]["stored"] == 0
    assert client.get("/_mock/stats").json()["lago"]["stored"] == 0


def test_a_dropped_connection_is_a_transport_error_and_stores_nothing(client_for: ClientFor) -> None:
    client = faulty_client(client_for, rate_drop=1.0)

    with pytest.raises(httpx.TransportError):
        client.post(f"{TOGAI}/ingest", json={"event": togai_event()})
    with pytest.raises(httpx.TransportError):
        client.post(f"{LAGO}/events", json={"event": lago_event()})

    stats = client.get("/_mock/stats").json()
    assert (stats["togai"]["stored"], stats["lago"]["stored"]) == (0, 0)
    assert (stats["togai"]["requests"], stats["lago"]["requests"]) == (1, 1)


def test_a_lost_response_stores_the_events_so_a_retry_is_a_duplicate(client_for: ClientFor) -> None:
    client = faulty_client(client_for, rate_lost_response=1.0)
    togai_batch = [togai_event(1), togai_event(2)]
    lago_batch = [lago_event(1), lago_event(2)]

    with pytest.raises(httpx.TransportError):
        client.post(f"{TOGAI}/ingestBatch", json={"events": togai_batch})
    with pytest.raises(httpx.TransportError):
        client.post(f"{LAGO}/events/batch", json={"events": lago_batch})
    client.put("/_mock/faults", json={"rate_lost_response": 0})
    togai_retry = client.post(f"{TOGAI}/ingestBatch", json={"events": togai_batch})
    lago_retry = client.post(f"{LAGO}/events/batch", json={"events": lago_batch})

    assert client.get("/_mock/events/togai").json() == togai_batch
    assert [event["transaction_id"] for event in client.get("/_mock/events/lago").json()] == [
        "txn_1",
        "txn_2",
    ]
    assert togai_retry.status_code == 202
    assert lago_retry.status_code == 422
    assert lago_retry.json()["error_details"] == {
        "0": {"transaction_id": ["value_already_exist"]},
        "1": {"transaction_id": ["value_already_exist"]},
    }
    stats = client.get("/_mock/stats").json()
    assert (stats["togai"]["duplicates"], stats["lago"]["duplicates"]) == (2, 2)


def test_latency_is_added_to_every_public_request(
    client_for: ClientFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    delays: list[float] = []

    async def record(seconds: float) -> None:
        delays.append(seconds)

    monkeypatch.setattr(gateway, "sleep", record)
    client = faulty_client(client_for, latency_ms=250)

    client.post(f"{TOGAI}/ingest", json={"event": togai_event()})
    client.get(f"{LAGO}/events/txn_1")
    client.get("/_mock/stats")

    assert delays == [0.25, 0.25]


def test_faults_never_touch_the_admin_routes_or_unauthorized_requests(client_for: ClientFor) -> None:
    client = faulty_client(client_for, rate_503=1.0)

    assert client.get("/_mock/stats").status_code == 200
    assert client.post(f"{TOGAI}/ingest", headers={"Authorization": "Bearer nope"}).status_code == 401


def outcomes(client: httpx.Client, count: int) -> list[str]:
    """What each of `count` requests met: a status code, or `drop` for a transport error."""
    seen = []
    for number in range(count):
        try:
            seen.append(str(client.post(f"{TOGAI}/ingest", json={"event": togai_event(number)}).status_code))
        except httpx.TransportError:
            seen.append("drop")
    return seen


MIXED = {"rate_429": 0.2, "rate_503": 0.2, "rate_drop": 0.2, "rate_lost_response": 0.2}


def test_the_same_seed_gives_the_same_faults(client_for: ClientFor) -> None:
    first = outcomes(faulty_client(client_for, seed=42, **MIXED), 40)
    second = outcomes(faulty_client(client_for, seed=42, **MIXED), 40)
    other = outcomes(faulty_client(client_for, seed=43, **MIXED), 40)

    assert first == second
    assert first != other
    assert {"202", "429", "503", "drop"} <= set(first)


def test_reset_and_a_new_seed_restart_the_sequence(client_for: ClientFor) -> None:
    client = faulty_client(client_for, seed=42, **MIXED)
    first = outcomes(client, 30)

    client.post("/_mock/reset")
    after_reset = outcomes(client, 30)
    client.put("/_mock/faults", json={"seed": 42})
    after_reseed = outcomes(client, 30)

    assert first == after_reset == after_reseed


def test_faults_can_be_changed_at_run_time_one_setting_at_a_time(client: httpx.Client) -> None:
    answered = client.put("/_mock/faults", json={"rate_429": 0.25, "retry_after": 2})

    assert answered.status_code == 200
    assert answered.json() == {
        "latency_ms": 0,
        "rate_429": 0.25,
        "rate_503": 0.0,
        "rate_drop": 0.0,
        "rate_lost_response": 0.0,
        "rate_gateway": 0.0,
        "rate_html_ok": 0.0,
        "retry_after": 2,
        "seed": 0,
        "gateway_status": 520,
        "togai_207_detail": False,  # as real Togai: no per-event detail unless asked for
    }
    assert client.get("/_mock/faults").json() == answered.json()
    client.put("/_mock/faults", json={"rate_429": 1})
    assert client.post(f"{TOGAI}/ingest", json={"event": togai_event()}).status_code == 429


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"rate_429": 1.5}, id="rate-above-one"),
        pytest.param({"rate_429": 0.6, "rate_drop": 0.6}, id="rates-sum-above-one"),
        pytest.param({"latency_ms": -1}, id="negative-latency"),
        pytest.param({"retry_after": 1.5}, id="fractional-retry-after"),
        pytest.param({"seed": "x"}, id="string-seed"),
        pytest.param({"rate_503": True}, id="boolean-rate"),
        pytest.param({"rate_timeout": 0.1}, id="unknown-setting"),
        pytest.param({"gateway_status": 404}, id="gateway-status-not-5xx"),
        pytest.param({"togai_207_detail": "no"}, id="string-flag"),
        pytest.param({"rate_gateway": 0.5, "rate_html_ok": 0.6}, id="new-rates-sum-above-one"),
        pytest.param([], id="not-an-object"),
    ],
)
def test_an_invalid_fault_change_is_refused_and_changes_nothing(client: httpx.Client, change: object) -> None:
    before = client.get("/_mock/faults").json()

    response = client.put("/_mock/faults", json=change)

    assert response.status_code == 400
    assert response.json()["message"]
    assert client.get("/_mock/faults").json() == before


def test_reset_forgets_events_and_counters_and_restores_the_start_up_faults(client_for: ClientFor) -> None:
    client = faulty_client(client_for, retry_after=9)
    client.post(f"{TOGAI}/ingest", json={"event": togai_event()})
    client.post(f"{LAGO}/events", json={"event": lago_event()})
    client.put("/_mock/faults", json={"rate_503": 0.5, "retry_after": 1})

    response = client.post("/_mock/reset")

    assert response.status_code == 200
    assert client.get("/_mock/stats").json() == {
        "togai": {"stored": 0, "duplicates": 0, "requests": 0},
        "lago": {"stored": 0, "duplicates": 0, "requests": 0, "arrivals": 0, "store": "postgres"},
    }
    assert client.get("/_mock/events/togai").json() == []
    assert client.get("/_mock/events/lago").json() == []
    assert client.get("/_mock/faults").json()["retry_after"] == 9
    assert client.get("/_mock/faults").json()["rate_503"] == 0.0


def test_the_command_line_reads_its_settings_from_the_environment(tmp_path: Any) -> None:
    catalogue = tmp_path / "c.json"
    config, port = config_from_env(
        {
            "MOCK_PORT": "9911",
            "MOCK_TOKEN": "secret",
            "MOCK_FAULTS": '{"rate_drop": 0.5, "seed": 3}',
            "MOCK_CATALOGUE": str(catalogue),
        }
    )

    assert port == 9911
    assert config.token == "secret"
    assert config.faults == FaultConfig(rate_drop=0.5, seed=3)
    assert config.catalogue_path == catalogue


def test_the_command_line_defaults() -> None:
    config, port = config_from_env({})

    assert (port, config.token, config.faults) == (8910, "test-token", FaultConfig())


@pytest.mark.parametrize("faults", ['{"rate_drop": 2}', "not json", "[1]", '{"drop": 1}'])
def test_bad_mock_faults_are_refused(faults: str) -> None:
    with pytest.raises(FaultConfigError):
        config_from_env({"MOCK_FAULTS": faults})


@pytest.mark.parametrize(
    "faults",
    ['{"rate_drop": "%s"}' % ("x" * 100_000), '{"seed": -%s}' % ("9" * 5_000)],
    ids=["long text", "int too long to write"],
)
def test_a_bad_fault_value_is_named_in_a_short_message(faults: str) -> None:
    """MOCK_FAULTS is the operator's text: a bad value is quoted cut short, never whole (nor a ValueError
    from writing an int of 5,000 digits)."""
    with pytest.raises(FaultConfigError) as raised:
        config_from_env({"MOCK_FAULTS": faults})
    assert len(str(raised.value)) < 300


@pytest.mark.parametrize("status", [520, 524])
def test_a_gateway_error_is_an_html_page_and_stores_nothing(client_for: ClientFor, status: int) -> None:
    client = faulty_client(client_for, rate_gateway=1.0, gateway_status=status)

    togai = client.post(f"{TOGAI}/ingestBatch", json={"events": [togai_event()]})
    lago = client.post(f"{LAGO}/events", json={"event": lago_event()})

    for response in (togai, lago):
        assert response.status_code == status
        assert response.headers["content-type"].startswith("text/html")
        assert f"Error {status}" in response.text
    stats = client.get("/_mock/stats").json()
    assert (stats["togai"]["stored"], stats["lago"]["stored"]) == (0, 0)


def test_an_html_200_is_a_captive_portal_and_stores_nothing(client_for: ClientFor) -> None:
    client = faulty_client(client_for, rate_html_ok=1.0)

    togai = client.post(f"{TOGAI}/ingest", json={"event": togai_event()})
    lago = client.post(f"{LAGO}/events/batch", json={"events": [lago_event()]})

    for response in (togai, lago):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert response.text.lstrip().startswith("<!DOCTYPE html>")
    stats = client.get("/_mock/stats").json()
    assert (stats["togai"]["stored"], stats["lago"]["stored"]) == (0, 0)


def test_the_new_faults_can_be_set_at_run_time_and_from_the_environment(client: httpx.Client) -> None:
    client.put("/_mock/faults", json={"rate_gateway": 1, "gateway_status": 524})

    assert client.post(f"{LAGO}/events", json={"event": lago_event()}).status_code == 524
    config, _port = config_from_env({"MOCK_FAULTS": '{"rate_html_ok": 0.5, "togai_207_detail": false}'})
    assert (config.faults.rate_html_ok, config.faults.togai_207_detail) == (0.5, False)


@pytest.mark.parametrize("detail", [True, False])
def test_a_togai_207_names_the_rejected_events_only_when_asked(client_for: ClientFor, detail: bool) -> None:
    client = faulty_client(client_for, togai_207_detail=detail)
    bad = togai_event(2, attributes=[{"name": "calls", "value": "3,5"}])

    response = client.post(f"{TOGAI}/ingestBatch", json={"events": [togai_event(1), bad, togai_event(3)]})

    assert response.status_code == 207
    assert ("details" in response.json()) is detail
    if detail:
        assert [entry["index"] for entry in response.json()["details"]["rejectedEvents"]] == [1]
    # Either way exactly the valid events are stored.
    assert [event["id"] for event in client.get("/_mock/events/togai").json()] == ["evt_1", "evt_3"]
