"""Togai as it really is: its 207 answers, and what the typed client does with a gateway's page.

Sources: the seed `seeds/000_*.txt` (Togai's Python client docs: 202, 207, 400, 401, 422, 429, 503 and
"0 | Error response"), zuora/togai-python-client `togai_client/models/ingest_event_response.py` (the
207 body: success, statusCode, name, message, code, free-form details) and the old per-event shape of
TogaiHQ/togai-python-client `docs/IngestBatchEventResponse.md` / `docs/IngestError.md`.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from billing_events import OutcomeStatus, RetryPolicy, Togai
from togai_api import AuthenticatedClient, errors
from togai_api.api.event_ingestion import ingest_batch
from togai_api.models import IngestBatchEventRequest

from .scripted import Scripted, accepted, togai_event

D = OutcomeStatus.DELIVERED
R = OutcomeStatus.REJECTED
HTML = "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"


def togai(handler: Any, retry: RetryPolicy) -> Togai:
    return Togai("t", base_url="http://togai.local", transport=httpx.MockTransport(handler), retry=retry)


def generated(answer: httpx.Response) -> AuthenticatedClient:
    return AuthenticatedClient(
        base_url="http://togai.local",
        token="t",
        httpx_args={"transport": httpx.MockTransport(lambda request: answer)},
    )


def batch_body() -> IngestBatchEventRequest:
    return IngestBatchEventRequest.from_dict({"events": [togai_event(1, id="evt-1")]})


# -- 207 answers, read by the overlay ---------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(httpx.Response(207, text=HTML, headers={"Content-Type": "text/html"}), id="html"),
        pytest.param(httpx.Response(207), id="empty"),
    ],
)
def test_a_207_that_is_not_togais_answer_is_retried_like_any_unreadable_2xx(
    fast_retry: RetryPolicy, answer: httpx.Response
) -> None:
    # README: "Togai's 2xx must be its JSON answer ... Anything else ... is treated like a lost
    # response: retried, then unknown". A 207 from something that is not Togai says nothing about
    # the event; calling it "rejected" (never to be sent again) loses a billable event.
    server = Scripted(answer, default=accepted)
    report = togai(server, fast_retry).send([togai_event(1)])
    assert (report.outcomes[0].status, len(server.requests)) == (D, 2)


def test_a_single_event_refused_in_a_207_keeps_togais_message_as_its_reason(fast_retry: RetryPolicy) -> None:
    message = "1 of 1 events were not accepted: events[0].schemaName: event schema api_calls is not active"
    server = Scripted(httpx.Response(207, json={"success": False, "statusCode": 207, "message": message}))
    report = togai(server, fast_retry).send([togai_event(1)])
    outcome = report.outcomes[0]
    assert outcome.status is R
    assert "event schema api_calls is not active" in (outcome.reason or "")


def test_the_older_per_event_207_shape_is_narrowed_to_each_events_own_answer(fast_retry: RetryPolicy) -> None:
    # TogaiHQ/togai-python-client docs/IngestBatchEventResponse.md: {"errors": [{message, eventPayload}]}.
    stored: dict[str, dict[str, Any]] = {}

    def server(request: httpx.Request) -> httpx.Response:
        events = json.loads(request.content)["events"]
        bad = [event for event in events if event["accountId"] == "unknown-account"]
        for event in events:
            if event not in bad:
                stored.setdefault(event["id"], event)
        if bad:
            errors_ = [{"message": "account not found", "eventPayload": event} for event in bad]
            return httpx.Response(207, json={"errors": errors_})
        return httpx.Response(202, json={"success": True})

    events = [togai_event(n, id=f"ev-{n}") for n in range(5)]
    events[2]["accountId"] = "unknown-account"
    report = togai(server, fast_retry).send(events)
    assert [o.status for o in report] == [D, D, R, D, D]
    assert sorted(stored) == ["ev-0", "ev-1", "ev-3", "ev-4"]


# -- the generated client ---------------------------------------------------------------------------


def test_the_generated_client_keeps_the_status_of_a_gateways_page_on_an_undeclared_status() -> None:
    """Why the spec leaves out Togai's catch-all ``default`` error answer: with it, this 502 page would be
    parsed as JSON and raise; without it the typed client hands back the status (README "Generated clients")."""
    answer = httpx.Response(502, text=HTML, headers={"Content-Type": "text/html"})
    with generated(answer) as client:
        response = ingest_batch.sync_detailed(client=client, body=batch_body())
    assert (response.status_code, response.parsed) == (502, None)
    strict = AuthenticatedClient(
        base_url="http://togai.local",
        token="t",
        raise_on_unexpected_status=True,
        httpx_args={"transport": httpx.MockTransport(lambda request: answer)},
    )
    with strict, pytest.raises(errors.UnexpectedStatus) as raised:
        ingest_batch.sync_detailed(client=strict, body=batch_body())
    assert raised.value.status_code == 502
