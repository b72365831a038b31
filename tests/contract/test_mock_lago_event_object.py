"""The EventObject the mock answers, field by field as lago-api serializes it, on both event stores.

Sources (getlago/lago-api): `app/serializers/v1/event_serializer.rb` (the fields and their formats),
`app/controllers/api/v1/events_controller.rb` (`show` reads `Event` on Postgres, `Clickhouse::EventsRaw` on
ClickHouse), `app/models/clickhouse/events_raw.rb` (a raw row's `id` and `created_at`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from starlette.applications import Starlette

from billing_events.mock.testing import LAGO_STORES, mock_app

from .mock_support import LAGO, TOKEN, lago_event

ClientFor = Callable[[Starlette], httpx.Client]
# Rails' `Time#iso8601` with no digits: whole seconds, in UTC.
WHOLE_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def _within(text: str, before: datetime, after: datetime) -> bool:
    moment = datetime.fromisoformat(text)
    return before.replace(microsecond=0) <= moment <= after + timedelta(seconds=1)


@pytest.mark.parametrize("lago_store", LAGO_STORES)
def test_created_at_is_answered_in_whole_seconds(client_for: ClientFor, lago_store: str) -> None:
    """The serializer writes `created_at&.iso8601`: no fraction, unlike `timestamp.iso8601(3)`."""
    client = client_for(mock_app(lago_store, token=TOKEN))
    before = datetime.now(UTC)
    written = client.post(f"{LAGO}/events", json={"event": lago_event()}).json()["event"]
    [batched] = client.post(f"{LAGO}/events/batch", json={"events": [lago_event(2)]}).json()["events"]
    found = [client.get(f"{LAGO}/events/txn_{n}").json()["event"] for n in (1, 2)]
    after = datetime.now(UTC)

    answers = [*found] if lago_store == "clickhouse" else [written, batched, *found]
    for answer in answers:
        assert WHOLE_SECONDS.match(answer["created_at"]), answer["created_at"]
        assert _within(answer["created_at"], before, after)
