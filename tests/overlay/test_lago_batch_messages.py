"""Lago's batch 422 as the server writes it: an index may map to a message instead of field codes.

lago-api's batch service stores a failed billable-metric expression's message under the event's index
(`app/services/events/create_batch_service.rb`); the rest of the batch was not stored and is sent again.
"""

from __future__ import annotations

import json

import httpx

from billing_events import Lago, OutcomeStatus, RetryPolicy

from .scripted import Scripted, lago_422, lago_event, lago_ok

MESSAGE = "expression failed: undefined variable 'gb'"


def expression_fails_for_bad_code(request: httpx.Request) -> httpx.Response:
    events = json.loads(request.content)["events"]
    failed = {str(index): MESSAGE for index, event in enumerate(events) if event["code"] == "bad_expression"}
    return lago_422(failed) if failed else lago_ok(request)


def test_an_index_with_a_message_rejects_that_event_with_the_message(fast_retry: RetryPolicy) -> None:
    server = Scripted(default=expression_fails_for_bad_code)
    events = [lago_event(n, code="bad_expression" if n == 5 else "api_calls") for n in range(8)]

    with Lago(
        "t", base_url="http://lago.local/api/v1", transport=server.transport(), retry=fast_retry
    ) as client:
        report = client.send(events)

    assert [outcome.status for outcome in report].count(OutcomeStatus.DELIVERED) == 7
    assert report.outcomes[5].status is OutcomeStatus.REJECTED
    assert report.outcomes[5].reason == MESSAGE
    # The answer names the event: the other seven go out once more, together, with no halving.
    assert server.sent_keys("transaction_id")[1] == [f"txn-{n}" for n in range(8) if n != 5]
    assert len(server.requests) == 2
