"""`MockConfig(validate=False)`: field rules are skipped, while envelopes, limits and duplicates still apply."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from starlette.applications import Starlette

from billing_events.mock import MockConfig, create_app

from .mock_support import LAGO, TOGAI, TOKEN, lago_event, togai_event


@pytest.fixture
def lenient(client_for: Callable[[Starlette], httpx.Client]) -> httpx.Client:
    return client_for(create_app(MockConfig(token=TOKEN, validate=False)))


def test_field_rules_are_not_checked(lenient: httpx.Client) -> None:
    togai = lenient.post(f"{TOGAI}/ingest", json={"event": togai_event(schemaName="", timestamp="whenever")})
    lago = lenient.post(f"{LAGO}/events", json={"event": lago_event(code=5, properties={"gb": [1]})})

    assert togai.status_code == 202
    assert lago.status_code == 200
    assert lago.json()["event"]["code"] == 5


def test_shapes_the_mock_needs_are_still_required(lenient: httpx.Client) -> None:
    lenient.put("/_mock/faults", json={"togai_207_detail": True}).raise_for_status()  # name the rejected
    togai = lenient.post(f"{TOGAI}/ingest", json={"event": "not an event"})
    partial = lenient.post(f"{TOGAI}/ingestBatch", json={"events": [togai_event(1), 7]})
    lago = lenient.post(f"{LAGO}/events", json={"event": lago_event(transaction_id=12)})
    timestamp = lenient.post(f"{LAGO}/events", json={"event": lago_event(timestamp="noon")})

    assert togai.status_code == 400
    assert partial.status_code == 207
    assert partial.json()["details"]["rejectedEvents"][0]["index"] == 1
    assert lago.json()["error_details"] == {"transaction_id": ["value_is_invalid"]}
    assert timestamp.json()["error_details"] == {"timestamp": ["invalid_format"]}


def test_limits_and_duplicates_still_apply(lenient: httpx.Client) -> None:
    too_many = lenient.post(f"{TOGAI}/ingestBatch", json={"events": [togai_event(n) for n in range(501)]})
    lenient.post(f"{LAGO}/events", json={"event": lago_event()})
    duplicate = lenient.post(f"{LAGO}/events", json={"event": lago_event()})

    assert too_many.status_code == 422
    assert duplicate.json()["error_details"] == {"transaction_id": ["value_already_exist"]}
