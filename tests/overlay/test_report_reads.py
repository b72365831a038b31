"""A report reads the same however it is read: by index, by slice, before or after ``outcomes``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cli.support import lago_event

from billing_events import Lago
from billing_events.mock import MockConfig, create_app
from billing_events.mock.testing import serve_in_thread

TOKEN = "report-reads-token"


@pytest.fixture(scope="module")
def lago_url() -> Iterator[str]:
    with serve_in_thread(create_app(MockConfig(token=TOKEN))) as origin:
        yield f"{origin}/lago/api/v1"


def test_a_slice_of_a_report_is_its_outcomes_whether_or_not_they_were_read(lago_url: str) -> None:
    events: list[Any] = [lago_event(n, transaction_id=f"slice-{n}") for n in range(4)]
    events[2] = {"code": "api_calls"}  # no subscription: rejected by the spec check
    with Lago(TOKEN, base_url=lago_url) as client:
        fresh, read = client.send(events), client.send(events)
    read.outcomes  # noqa: B018 - built before slicing

    for report in (fresh, read):
        assert [outcome.status for outcome in report[1:3]] == list(report.statuses[1:3])
        assert [outcome.key for outcome in report[::-1]] == [report[n].key for n in (3, 2, 1, 0)]
        assert report[5:] == ()
