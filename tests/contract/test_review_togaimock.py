"""Review: the mock's Togai side against Togai as documented.

Sources: `/work/shared/api-facts.md` (Togai section); Togai's API reference
https://docs.togai.com/api-reference/event-ingestion/ingest-events-to-togai-in-batch ("Source time stamp of
the event. This timestamp must be in ISO 8601 format."); https://docs.togai.com/docs/quotas-and-limits
("Unauthenticated API requests from an IP | 5 requests per 30 mins | No"); https://docs.togai.com/docs/event_statuses.md
(unknown schema or account fail asynchronously, after ingestion).
"""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette

from billing_events.mock import create_app
from billing_events.mock.config import MockConfig
from billing_events.mock.ratelimit import RateLimitConfig
from billing_events.mock.testing import sync_transport

from .mock_support import TOGAI, TOKEN, togai_event


def stored_ids(client: httpx.Client) -> list[str]:
    return [event.get("id") for event in client.get("/_mock/events/togai").json()]


# --- defects -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("day", ["2024-02-30T10:15:30", "2024-04-31T10:15:30", "2023-02-29T10:15:30"])
def test_an_offset_less_timestamp_on_a_day_that_does_not_exist_is_refused(
    client: httpx.Client, day: str
) -> None:
    # Togai: "This timestamp must be in ISO 8601 format"; api-facts: "timestamp | ISO 8601 date-time". The
    # spec accepts the offset-less form only because Togai's own examples leave the offset out
    # (specs/togai.yaml, LocalDateTime); it checks ranges by pattern and never the calendar.
    with_offset = client.post(f"{TOGAI}/ingest", json={"event": togai_event(1, timestamp=day + "Z")})
    without = client.post(f"{TOGAI}/ingest", json={"event": togai_event(2, timestamp=day)})

    assert with_offset.status_code == 400  # holds today: `format: date-time` checks the calendar
    assert without.status_code == 400, without.text
    assert without.json()["message"].startswith("event.timestamp: ")
    assert stored_ids(client) == []


def test_unauthenticated_requests_are_throttled_under_the_published_limits() -> None:
    # https://docs.togai.com/docs/quotas-and-limits: "Unauthenticated API requests from an IP | 5 requests per
    # 30 mins | No" (not adjustable). The mock gives unknown tokens no bucket at all (ratelimit.py,
    # `rate_limited`), so a client with a bad token sees 401 forever, where Togai turns to 429 and a sender
    # that retries 429s ends its events unknown instead of failed.
    app = create_app(MockConfig(token=TOKEN, rate_limits=RateLimitConfig(enabled=True)))
    with httpx.Client(
        transport=sync_transport(app), base_url="http://mock", headers={"Authorization": "Bearer wrong"}
    ) as client:
        statuses = [
            client.post(f"{TOGAI}/ingest", json={"event": togai_event(n)}).status_code for n in range(6)
        ]

    assert statuses[:5] == [401] * 5
    assert statuses[5] == 429
    assert app.state.mock.togai.events() == []


# --- what holds ----------------------------------------------------------------------------------------


def test_unknown_schema_and_account_are_accepted_for_asynchronous_failure(client: httpx.Client) -> None:
    # event_statuses: INGESTION_FAILED_SCHEMA_NOT_DEFINED / INGESTION_FAILED ("getting ... schema, account")
    # are set while processing, after the 202.
    events = [togai_event(1, schemaName="no_such_schema"), togai_event(2, accountId="no-such-account")]

    response = client.post(f"{TOGAI}/ingestBatch", json={"events": events})

    assert (response.status_code, response.json()) == (202, {"success": True})
    assert stored_ids(client) == ["evt_1", "evt_2"]


def test_a_far_past_timestamp_is_accepted(client: httpx.Client) -> None:
    # api-facts: "Events that arrive too late are accepted, then fail asynchronously".
    response = client.post(f"{TOGAI}/ingest", json={"event": togai_event(timestamp="2001-01-01T00:00:00Z")})

    assert response.status_code == 202


def test_a_custom_unit_is_accepted_as_in_togais_own_example(client: httpx.Client) -> None:
    # Togai's ingestBatch example sends `"unit": "KiloBytes"`, which is not in the documented list.
    event = togai_event(attributes=[{"name": "sizeOfMessage", "value": "60", "unit": "KiloBytes"}])

    assert client.post(f"{TOGAI}/ingest", json={"event": event}).status_code == 202


def test_the_x_api_key_header_alone_is_not_credential(mock_app: Starlette) -> None:
    # api-facts: Togai defines an X-API-Key scheme "but no operation uses it".
    with httpx.Client(
        transport=sync_transport(mock_app), base_url="http://mock", headers={"X-API-Key": TOKEN}
    ) as client:
        response = client.post(f"{TOGAI}/ingest", json={"event": togai_event()})

    assert (response.status_code, set(response.json())) == (401, {"message"})
