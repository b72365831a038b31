"""The providers' own Python clients against the mock, over HTTP: it answers them as the providers do.

Someone who tests code written against ``lago-python-client`` or ``togai-client`` points it at
``billing-events mock``; each call must parse the mock's answer as it parses the provider's.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from billing_events.mock.handle import ProviderMock

pytest.importorskip("lago_python_client")
pytest.importorskip("togai_client")

SUBSCRIPTION = "sub_acme_growth"  # in the mock's catalogue, with the metric api_calls


def lago_client(mock: ProviderMock, token: str | None = None) -> Any:
    from lago_python_client.client import Client

    # The client joins "api/v1/" onto api_url itself, so it is given the origin with a trailing "/".
    origin = mock.base_url.removesuffix("/api/v1") + "/"
    return Client(api_key=token or mock.token, api_url=origin)


def lago_event(transaction_id: str, **fields: Any) -> Any:
    from lago_python_client.models.event import Event

    values: dict[str, Any] = {
        "transaction_id": transaction_id,
        "external_subscription_id": SUBSCRIPTION,
        "code": "api_calls",
        "timestamp": int(time.time()),
        "properties": {"calls": 3},
    }
    return Event(**{**values, **fields})


def test_lago_create_find_and_batch_parse_the_mocks_answers(lago_mock_server: ProviderMock) -> None:
    from lago_python_client.models.event import BatchEvent

    client = lago_client(lago_mock_server)

    created = client.events.create(lago_event("tx-one"))
    assert created is not None
    assert (created.transaction_id, created.code, created.external_subscription_id) == (
        "tx-one",
        "api_calls",
        SUBSCRIPTION,
    )
    assert created.lago_id and created.created_at and created.properties == {"calls": 3}

    found = client.events.find("tx-one")
    assert (found.transaction_id, found.lago_id) == ("tx-one", created.lago_id)

    batch = BatchEvent(events=[lago_event(f"tx-batch-{n}", timestamp=time.time()) for n in range(3)])
    assert client.events.batch_create(batch) is None  # the client returns nothing for a batch

    lago_mock_server.assert_stored(["tx-one", "tx-batch-0", "tx-batch-1", "tx-batch-2"])


def test_lago_estimate_fees_parses_the_mocks_fees(lago_mock_server: ProviderMock) -> None:
    client = lago_client(lago_mock_server)

    fees = client.events.estimate_fees(lago_event("tx-estimate"))["fees"]

    # Parsed into the client's own fee models: the item, the amount and the currency.
    assert [(fee.item.code, fee.external_subscription_id, fee.amount_currency) for fee in fees] == [
        ("api_calls", SUBSCRIPTION, "USD")
    ]
    assert fees[0].amount_cents == fees[0].total_amount_cents > 0
    assert lago_mock_server.stored_keys() == set()  # an estimate stores nothing


def test_lago_errors_reach_the_client_as_its_own_errors(lago_mock_server: ProviderMock) -> None:
    from lago_python_client.exceptions import LagoApiError

    with pytest.raises(LagoApiError) as missing:
        lago_client(lago_mock_server).events.find("tx-never-sent")
    assert missing.value.status_code == 404
    assert missing.value.response["code"] == "event_not_found"

    with pytest.raises(LagoApiError) as refused:
        lago_client(lago_mock_server, token="not-the-token").events.create(lago_event("tx-refused"))
    assert refused.value.status_code == 401


def test_lago_client_waits_out_the_mocks_429_by_its_reset_header(lago_mock_server: ProviderMock) -> None:
    # The official client retries a 429 after X-RateLimit-Reset seconds, a header real Lago sends.
    lago_mock_server.set_rate_limits(enabled=True, limits={"lago.create_event": 1}, burst_seconds=1.0)
    client = lago_client(lago_mock_server)

    for n in range(2):
        assert client.events.create(lago_event(f"tx-paced-{n}")) is not None

    lago_mock_server.assert_stored(["tx-paced-0", "tx-paced-1"])
    seconds = lago_mock_server.rate_counters()["seconds"].values()
    assert (
        sum(groups["lago.create_event"]["throttled"] for groups in seconds if "lago.create_event" in groups)
        >= 1
    )


def togai_api(mock: ProviderMock, token: str | None = None) -> Any:
    from togai_client.api.event_ingestion_api import EventIngestionApi
    from togai_client.api_client import ApiClient
    from togai_client.configuration import Configuration

    return EventIngestionApi(ApiClient(Configuration(host=mock.base_url, access_token=token or mock.token)))


def togai_event(event_id: str) -> Any:
    from togai_client.models.event import Event

    return Event.from_dict(
        {
            "id": event_id,
            "schemaName": "api_calls",
            "accountId": "acme-corp",
            "timestamp": "2026-11-27T10:00:00Z",
            "attributes": [{"name": "calls", "value": "1"}],
            "dimensions": {"region": "eu-west-1"},
        }
    )


def test_togai_ingest_and_ingest_batch_parse_the_mocks_answers(togai_mock_server: ProviderMock) -> None:
    from togai_client.models.ingest_batch_event_request import IngestBatchEventRequest
    from togai_client.models.ingest_event_request import IngestEventRequest

    api = togai_api(togai_mock_server)

    first = api.ingest_with_http_info(IngestEventRequest(event=togai_event("evt-1")))
    again = api.ingest_with_http_info(IngestEventRequest(event=togai_event("evt-1")))
    batch = api.ingest_batch_with_http_info(
        IngestBatchEventRequest(events=[togai_event("evt-2"), togai_event("evt-3")])
    )

    # 202 for each, the repeated id too (Togai marks a duplicate later, and counts it once).
    assert (first.status_code, again.status_code, batch.status_code) == (202, 202, 202)
    assert first.data.success and again.data.success and batch.data.success
    togai_mock_server.assert_stored(["evt-1", "evt-2", "evt-3"])


def test_togai_errors_reach_the_client_as_its_own_errors(togai_mock_server: ProviderMock) -> None:
    from togai_client.exceptions import ApiException, UnauthorizedException
    from togai_client.models.ingest_batch_event_request import IngestBatchEventRequest
    from togai_client.models.ingest_event_request import IngestEventRequest

    with pytest.raises(UnauthorizedException):
        togai_api(togai_mock_server, token="not-the-token").ingest(
            IngestEventRequest(event=togai_event("evt-x"))
        )

    # One request per 5 s: the second comes long before the bucket refills.
    togai_mock_server.set_rate_limits(enabled=True, limits={"togai.ingest_batch": 0.2}, burst_seconds=5.0)
    api = togai_api(togai_mock_server)
    api.ingest_batch(IngestBatchEventRequest(events=[togai_event("evt-paced-0")]))
    with pytest.raises(ApiException) as throttled:
        api.ingest_batch(IngestBatchEventRequest(events=[togai_event("evt-paced-1")]))
    assert throttled.value.status == 429
    togai_mock_server.assert_stored(["evt-paced-0"])
