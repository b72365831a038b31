"""A Lago event the overlay refuses keeps the timestamp it was given with its key, so a fixed dead letter
replayed twice is one event on the ClickHouse store (which deduplicates on the key and the timestamp)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from billing_events import Lago
from billing_events.mock import ProviderMock


@pytest.mark.parametrize("lago_mock", ["clickhouse"], indirect=True)
def test_a_fixed_rejected_event_replayed_twice_is_billed_once(
    lago_mock: ProviderMock, tmp_path: Path
) -> None:
    letters = tmp_path / "dead.jsonl"
    with lago_mock.new_client(dead_letter_path=letters) as lago:
        assert isinstance(lago, Lago)
        report = lago.send([{"external_subscription_id": "sub_acme", "properties": {"seats": 2}}])  # no code
        assert report[0].status.value == "rejected"
        assert "timestamp" in report[0].event

        letter = json.loads(letters.read_text(encoding="utf-8"))
        assert letter["event"]["timestamp"] == report[0].event["timestamp"]
        letter["event"]["code"] = "seats"  # fixed by hand, as the README's replay section suggests
        fixed = tmp_path / "fixed.jsonl"
        fixed.write_text(json.dumps(letter) + "\n", encoding="utf-8")

        assert lago.replay(fixed).ok
        assert lago.replay(fixed).ok  # replaying twice is safe
    assert len(lago_mock.stored()) == 1
