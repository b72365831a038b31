"""The mock's Togai behaviour: storage by id, 207 partial batches, limits and error bodies."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from billing_events.mock import MockState
from billing_events.mock.app import create_app
from billing_events.mock.config import DEFAULT_SPECS_DIR, FaultConfig, MockConfig
from billing_events.mock.schemas import load_spec
from billing_events.mock.testing import sync_transport
from togai_api import AuthenticatedClient
from togai_api.api.event_ingestion import ingest_batch
from togai_api.models import IngestBatchEventRequest, IngestDetails, IngestEventResponse

from .mock_support import TOGAI, TOKEN, assert_matches, togai_event


def stored(client: httpx.Client) -> list[dict[str, Any]]:
    events = client.get("/_mock/events/togai").json()
    assert isinstance(events, list)
    return events


def test_an_event_is_stored_exactly_as_sent(client: httpx.Client) -> None:
    event = togai_event(dimensions={"region": "eu-west-1", "plan": "grøwth"})

    response = client.post(f"{TOGAI}/ingest", json={"event": event})

    assert response.status_code == 202
    assert response.json() == {"success": True}
    assert stored(client) == [event]


def test_a_repeated_id_is_accepted_but_stored_once_across_both_endpoints(client: httpx.Client) -> None:
    first = client.post(f"{TOGAI}/ingest", json={"event": togai_event(1)})
    again = client.post(
        f"{TOGAI}/ingestBatch", json={"events": [togai_event(1, accountId="other"), togai_event(2)]}
    )
    once_more = client.post(f"{TOGAI}/ingest", json={"event": togai_event(2)})

    assert [first.status_code, again.status_code, once_more.status_code] == [202, 202, 202]
    assert [event["id"] for event in stored(client)] == ["evt_1", "evt_2"]
    # The first copy wins: a duplicate never overwrites what was stored.
    assert stored(client)[0]["accountId"] == "acme-corp"
    assert client.get("/_mock/stats").json()["togai"] == {"stored": 2, "duplicates": 2, "requests": 3}


def test_a_repeated_id_inside_one_batch_is_stored_once(client: httpx.Client) -> None:
    response = client.post(f"{TOGAI}/ingestBatch", json={"events": [togai_event(7), togai_event(7)]})

    assert response.status_code == 202
    assert len(stored(client)) == 1
    assert client.get("/_mock/stats").json()["togai"]["duplicates"] == 1


def test_events_without_id_are_each_stored(client: httpx.Client) -> None:
    event = togai_event()
    del event["id"]

    client.post(f"{TOGAI}/ingest", json={"event": event})
    client.post(f"{TOGAI}/ingestBatch", json={"events": [event, event]})

    assert stored(client) == [event, event, event]


def test_a_partly_invalid_batch_keeps_the_valid_events_and_names_the_rejected_ones(
    client: httpx.Client,
) -> None:
    client.put("/_mock/faults", json={"togai_207_detail": True}).raise_for_status()  # our detail shape
    bad_value = togai_event(2, attributes=[{"name": "stored", "value": "3,75"}])
    no_account = togai_event(3)
    del no_account["accountId"]
    events = [togai_event(1), bad_value, no_account, togai_event(4)]

    response = client.post(f"{TOGAI}/ingestBatch", json={"events": events})

    assert response.status_code == 207
    body = response.json()
    assert_matches("togai", "IngestEventResponse", body)
    assert body["success"] is False
    assert body["statusCode"] == 207
    assert body["message"] == "2 of 4 events were not accepted"
    rejected = body["details"]["rejectedEvents"]
    assert [(entry["index"], entry["id"]) for entry in rejected] == [(1, "evt_2"), (2, "evt_3")]
    assert rejected[0]["message"].startswith("attributes[0].value: ")
    assert "does not match" in rejected[0]["message"]
    assert rejected[1]["message"].startswith("accountId: ")
    assert "required" in rejected[1]["message"]
    assert [event["id"] for event in stored(client)] == ["evt_1", "evt_4"]


def test_a_rejected_event_without_an_id_has_no_id_in_its_entry(client: httpx.Client) -> None:
    client.put("/_mock/faults", json={"togai_207_detail": True}).raise_for_status()
    nameless = togai_event(2, schemaName="")
    del nameless["id"]

    response = client.post(f"{TOGAI}/ingestBatch", json={"events": [togai_event(1), nameless]})

    assert response.status_code == 207
    [entry] = response.json()["details"]["rejectedEvents"]
    assert entry["index"] == 1
    assert "id" not in entry
    assert entry["message"].startswith("schemaName: ")


def test_a_batch_with_no_acceptable_event_is_a_400(client: httpx.Client) -> None:
    response = client.post(f"{TOGAI}/ingestBatch", json={"events": [togai_event(1, timestamp="yesterday")]})

    assert response.status_code == 400
    assert_matches("togai", "ErrorResponse", response.json())
    assert "events[0]" in response.json()["message"]
    assert "timestamp" in response.json()["message"]
    assert stored(client) == []


def test_a_timestamp_without_offset_is_accepted_as_the_published_spec_allows(client: httpx.Client) -> None:
    response = client.post(f"{TOGAI}/ingest", json={"event": togai_event(timestamp="2024-05-01T10:15:30")})

    assert response.status_code == 202
    assert client.get("/_mock/events/togai").json()[0]["timestamp"] == "2024-05-01T10:15:30"


def test_a_timestamp_that_is_no_date_time_is_refused(client: httpx.Client) -> None:
    response = client.post(f"{TOGAI}/ingest", json={"event": togai_event(timestamp="2024-05-01 10:15")})

    assert response.status_code == 400
    assert response.json()["message"].startswith("event.timestamp: ")


def test_events_with_an_empty_id_are_each_stored(client: httpx.Client) -> None:
    for _ in range(2):
        response = client.post(f"{TOGAI}/ingest", json={"event": togai_event(id="")})
        assert response.status_code == 202

    assert client.get("/_mock/stats").json()["togai"]["stored"] == 2


def test_an_invalid_single_event_names_the_field_and_rule(client: httpx.Client) -> None:
    event = togai_event()
    del event["schemaName"]

    response = client.post(f"{TOGAI}/ingest", json={"event": event})

    assert response.status_code == 400
    assert response.json() == {"message": 'event.schemaName: "schemaName" is a required property'}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"events": []}, id="empty-list"),
        pytest.param({"evnts": [togai_event()]}, id="misspelt-key"),
        pytest.param({"events": [togai_event()], "extra": 1}, id="extra-key"),
        pytest.param({"events": {"0": togai_event()}}, id="not-a-list"),
        pytest.param([togai_event()], id="bare-list"),
    ],
)
def test_a_wrong_batch_envelope_is_a_400(client: httpx.Client, body: object) -> None:
    response = client.post(f"{TOGAI}/ingestBatch", json=body)

    assert response.status_code == 400
    assert_matches("togai", "ErrorResponse", response.json())


def test_more_than_500_events_is_a_422_and_500_is_fine(client: httpx.Client, mock_state: MockState) -> None:
    limit = mock_state.rules.togai.max_batch_events
    assert limit == 500

    too_many = client.post(
        f"{TOGAI}/ingestBatch", json={"events": [togai_event(n) for n in range(limit + 1)]}
    )
    at_limit = client.post(f"{TOGAI}/ingestBatch", json={"events": [togai_event(n) for n in range(limit)]})

    assert too_many.status_code == 422
    assert too_many.json() == {"message": "events: at most 500 events per request, got 501"}
    assert at_limit.status_code == 202
    assert len(stored(client)) == limit


def test_the_byte_limit_comes_from_the_spec(mock_state: MockState) -> None:
    spec = load_spec(DEFAULT_SPECS_DIR / "togai.json")
    declared = spec["paths"]["/ingestBatch"]["post"]["requestBody"]["x-max-body-bytes"]

    assert mock_state.rules.togai.batch_max_bytes == declared == 1_048_576


def test_a_body_over_the_byte_limit_is_a_422_and_nothing_is_stored(client: httpx.Client) -> None:
    # 300 events of about 4 KiB each: under the 500-event limit, over 1 MiB.
    dimensions = {f"d{n}": "x" * 200 for n in range(20)}
    events = [togai_event(n, dimensions=dimensions) for n in range(300)]

    response = client.post(f"{TOGAI}/ingestBatch", json={"events": events})

    assert response.status_code == 422
    assert "1048576 bytes" in response.json()["message"]
    assert stored(client) == []


def test_the_207_answer_is_read_by_the_generated_client() -> None:
    # The mock with our own detail shape, which the spec documents (real Togai sends none).
    mock_app = create_app(MockConfig(token=TOKEN, faults=FaultConfig(togai_207_detail=True)))
    client = AuthenticatedClient(
        base_url=f"http://mock{TOGAI}",
        token=TOKEN,
        httpx_args={"transport": sync_transport(mock_app)},
    )
    body = IngestBatchEventRequest.from_dict(
        {"events": [togai_event(1), togai_event(2, attributes=[{"name": "", "value": "1"}])]}
    )

    with client:
        response = ingest_batch.sync_detailed(client=client, body=body)

    assert response.status_code == 207
    assert isinstance(response.parsed, IngestEventResponse)
    assert isinstance(response.parsed.details, IngestDetails)
    rejected = response.parsed.details.rejected_events
    assert isinstance(rejected, list)
    assert [(entry.index, entry.id) for entry in rejected] == [(1, "evt_2")]


def test_a_207_names_no_rejected_events_by_default_as_real_togai(client: httpx.Client) -> None:
    bad_value = togai_event(2, attributes=[{"name": "stored", "value": "3,75"}])

    response = client.post(f"{TOGAI}/ingestBatch", json={"events": [togai_event(1), bad_value]})

    assert response.status_code == 207
    assert "rejectedEvents" not in (response.json().get("details") or {})
    assert [event["id"] for event in stored(client)] == ["evt_1"]  # the valid event is kept
