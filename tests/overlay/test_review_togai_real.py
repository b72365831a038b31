"""Togai as it really is: its 207 answers, its documented default error response, and gateway bodies.

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
from togai_api.models import ErrorResponse, IngestBatchEventRequest

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


@pytest.mark.xfail(
    strict=True,
    reason="a 207 whose body is not Togai's JSON answer skips the 2xx check: a single event ends rejected",
)
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


@pytest.mark.xfail(
    strict=True, reason="a single event's 207 drops Togai's own message; the reason is a fixed phrase"
)
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


@pytest.mark.xfail(
    strict=True,
    reason="specs/togai.yaml drops Togai's documented default ErrorResponse: other statuses parse to None",
)
@pytest.mark.parametrize("status", [403, 500])
def test_the_generated_client_reads_togais_default_error_response(status: int) -> None:
    # Togai's documents list "0 | Error response" (the OpenAPI `default`) for /ingest and /ingestBatch.
    answer = httpx.Response(status, json={"message": "Internal server error"})
    with generated(answer) as client:
        response = ingest_batch.sync_detailed(client=client, body=batch_body())
    assert response.status_code == status
    assert isinstance(response.parsed, ErrorResponse)
    assert response.parsed.message == "Internal server error"


@pytest.mark.xfail(
    strict=True,
    reason="a gateway's non-JSON 503/429 body makes the generated client raise JSONDecodeError",
)
@pytest.mark.parametrize("status", [429, 503])
def test_the_generated_client_answers_a_gateways_html_error_with_its_status(status: int) -> None:
    answer = httpx.Response(status, text=HTML, headers={"Content-Type": "text/html"})
    with generated(answer) as client:
        try:
            response = ingest_batch.sync_detailed(client=client, body=batch_body())
        except errors.UnexpectedStatus as exc:
            assert exc.status_code == status
            return
        except ValueError as exc:
            pytest.fail(f"a {status} with an HTML body raised {type(exc).__name__}: {exc}")
    assert response.status_code == status
