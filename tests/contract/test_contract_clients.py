"""Property tests: payloads generated from the specs, through the generated clients, into the mock and back.

Valid payloads go spec -> generated model (`from_dict`) -> generated client -> mock; the mock must accept them
and store what the client sent. Invalid payloads must be refused with a documented status and a body that
matches the spec and parses into the generated error model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from attrs import frozen
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from starlette.applications import Starlette

import lago_api
import togai_api
from billing_events.mock import MockConfig, MockState, create_app
from billing_events.mock.lago_events import (
    MAX_TIMESTAMP,
    PRECISE_LIMIT,
    nul_field,
    precise_decimal,
    precise_text,
)
from billing_events.mock.schemas import compile_component, compile_schema, load_spec
from billing_events.mock.testing import sync_transport
from lago_api.api.events import create_batch_events, create_event, event_estimate_fees, find_event
from lago_api.models import (
    ApiErrorBadRequest,
    ApiErrorNotFound,
    ApiErrorUnprocessableEntity,
    EventBatchInput,
    EventEstimateFeesInput,
    EventInput,
    EventResponse,
    EventsResponse,
    FeesResponse,
)
from togai_api.api.event_ingestion import ingest, ingest_batch
from togai_api.models import ErrorResponse, IngestBatchEventRequest, IngestEventRequest, IngestEventResponse

from .contract_targets import ROOT
from .mock_support import LAGO, TOGAI, TOKEN

TOGAI_SPEC = load_spec(ROOT / "specs" / "togai.yaml")
LAGO_SPEC = load_spec(ROOT / "specs" / "lago.yaml")
TOGAI_SCHEMA = schemathesis.openapi.from_dict(TOGAI_SPEC)
LAGO_SCHEMA = schemathesis.openapi.from_dict(LAGO_SPEC)
TOGAI_BYTE_LIMIT = TOGAI_SPEC["paths"]["/ingestBatch"]["post"]["requestBody"]["x-max-body-bytes"]

PROPERTY_SETTINGS = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def bodies(
    schema: schemathesis.BaseSchema, operation_id: str, mode: GenerationMode
) -> st.SearchStrategy[Any]:
    operation = schema.find_operation_by_id(operation_id)  # type: ignore[attr-defined]
    cases: st.SearchStrategy[schemathesis.Case[Any]] = operation.as_strategy(generation_mode=mode)
    return cases.map(lambda case: case.body)


@pytest.fixture(scope="module")
def app() -> Starlette:
    return create_app(MockConfig(token=TOKEN))


@pytest.fixture(scope="module")
def state(app: Starlette) -> MockState:
    mock: MockState = app.state.mock
    return mock


@pytest.fixture(scope="module")
def togai(app: Starlette) -> Iterator[togai_api.AuthenticatedClient]:
    client = togai_api.AuthenticatedClient(
        base_url=f"http://mock{TOGAI}", token=TOKEN, httpx_args={"transport": sync_transport(app)}
    )
    with client:
        yield client


@pytest.fixture(scope="module")
def lago(app: Starlette) -> Iterator[lago_api.AuthenticatedClient]:
    client = lago_api.AuthenticatedClient(
        base_url=f"http://mock{LAGO}", token=TOKEN, httpx_args={"transport": sync_transport(app)}
    )
    with client:
        yield client


def wire_size(body: object) -> int:
    return len(json.dumps(body).encode())


def first_per_id(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What Togai keeps of a batch: the first event of each id, and every event without one (or with "")."""
    seen: set[str] = set()
    kept = []
    for event in events:
        if event.get("id"):
            if event["id"] in seen:
                continue
            seen.add(event["id"])
        kept.append(event)
    return kept


def assert_same_togai_event(generated: dict[str, Any], stored: dict[str, Any]) -> None:
    """Equal field by field; the timestamp is re-serialised by the client, so it is compared as an instant."""
    assert {key: value for key, value in stored.items() if key != "timestamp"} == {
        key: value for key, value in generated.items() if key != "timestamp"
    }
    if stored["timestamp"] != generated["timestamp"]:
        assert datetime.fromisoformat(stored["timestamp"]) == datetime.fromisoformat(generated["timestamp"])


@PROPERTY_SETTINGS
@given(body=bodies(TOGAI_SCHEMA, "ingestBatch", GenerationMode.POSITIVE))
def test_valid_togai_batches_are_stored_as_sent(
    body: dict[str, Any], state: MockState, togai: togai_api.AuthenticatedClient
) -> None:
    state.reset()
    model = IngestBatchEventRequest.from_dict(body)
    sent = model.to_dict()

    response = ingest_batch.sync_detailed(client=togai, body=model)

    if wire_size(sent) > TOGAI_BYTE_LIMIT:
        # The byte limit lives in `x-max-body-bytes`, which JSON Schema generation cannot see.
        assert response.status_code == 422
        assert isinstance(response.parsed, ErrorResponse)
        return
    assert response.status_code == 202
    assert isinstance(response.parsed, IngestEventResponse)
    assert response.parsed.success is True
    stored = state.togai.events()
    assert stored == first_per_id(sent["events"])
    for generated, kept in zip(first_per_id(body["events"]), stored, strict=True):
        assert_same_togai_event(generated, kept)


@PROPERTY_SETTINGS
@given(body=bodies(TOGAI_SCHEMA, "ingest", GenerationMode.POSITIVE))
def test_valid_togai_events_are_stored_as_sent(
    body: dict[str, Any], state: MockState, togai: togai_api.AuthenticatedClient
) -> None:
    state.reset()
    model = IngestEventRequest.from_dict(body)

    response = ingest.sync_detailed(client=togai, body=model)

    assert response.status_code == 202
    [stored] = state.togai.events()
    assert stored == model.to_dict()["event"]
    assert_same_togai_event(body["event"], stored)


def server_seconds(timestamp: object) -> Decimal:
    """Unix seconds as lago-api reads them: the number's text as an exact decimal (`BigDecimal(value.to_s)`);
    a JSON number with decimals is a Float first, whose text is the shortest that reads back (`repr`)."""
    return Decimal(repr(timestamp) if isinstance(timestamp, float) else str(timestamp))


def expected_instant(timestamp: object) -> datetime:
    seconds = server_seconds(timestamp)
    whole = int(seconds)
    millis = int((seconds - whole) * 1000)
    return datetime.fromtimestamp(whole, UTC) + timedelta(milliseconds=millis)


def assert_same_lago_event(sent: dict[str, Any], stored: dict[str, Any]) -> None:
    assert stored["transaction_id"] == sent["transaction_id"]
    assert stored["external_subscription_id"] == sent.get("external_subscription_id")
    assert stored["code"] == sent["code"]
    assert stored["properties"] == (sent.get("properties") or {})
    assert stored["precise_total_amount_cents"] == precise_text(sent.get("precise_total_amount_cents"))
    assert stored["lago_customer_id"] is None
    assert stored["lago_subscription_id"] is None
    # Keys the server does not know are dropped, not stored.
    assert set(stored) <= STORED_KEYS
    if sent.get("timestamp") is not None:
        assert datetime.fromisoformat(stored["timestamp"]) == expected_instant(sent["timestamp"])


STORED_KEYS = {
    "lago_id",
    "transaction_id",
    "lago_customer_id",
    "code",
    "timestamp",
    "lago_subscription_id",
    "external_subscription_id",
    "precise_total_amount_cents",
    "properties",
    "created_at",
}


def refused_indexes(events: list[dict[str, Any]]) -> set[str]:
    """Indexes the Postgres store refuses in a schema-valid batch.

    First the events' own checks: timestamps past year 9999, and amounts the column cannot hold. Only a batch
    that passes them all reaches the insert, where a transaction id seen earlier in the batch is refused (rows
    are matched by transaction_id alone).
    """
    invalid = set()
    for index, event in enumerate(events):
        if event.get("timestamp") is not None and server_seconds(event["timestamp"]) > MAX_TIMESTAMP:
            invalid.add(str(index))
        amount = precise_decimal(event.get("precise_total_amount_cents"))
        if amount is not None and abs(amount) >= PRECISE_LIMIT:
            invalid.add(str(index))  # beyond the server's decimal(40, 15) column
        if nul_field(event) is not None:
            invalid.add(str(index))  # U+0000, which Postgres text and jsonb cannot hold
    if invalid:
        return invalid
    seen: set[str] = set()
    repeated = set()
    for index, event in enumerate(events):
        if event["transaction_id"] in seen:
            repeated.add(str(index))
        seen.add(event["transaction_id"])
    return repeated


def assert_found(lago: lago_api.AuthenticatedClient, stored: list[dict[str, Any]]) -> None:
    """findEvent answers the first stored event of a transaction id."""
    transaction_id = stored[0]["transaction_id"]
    # "." and ".." are dot-segments: httpx removes them from the path before sending (see the report).
    if transaction_id in {".", ".."}:
        return
    found = find_event.sync_detailed(transaction_id, client=lago)
    assert isinstance(found.parsed, EventResponse)
    assert found.parsed.to_dict()["event"]["lago_id"] == stored[0]["lago_id"]


@PROPERTY_SETTINGS
@given(body=bodies(LAGO_SCHEMA, "createBatchEvents", GenerationMode.POSITIVE))
def test_valid_lago_batches_are_stored_whole_or_refused_whole(
    body: dict[str, Any], state: MockState, lago: lago_api.AuthenticatedClient
) -> None:
    state.reset()
    model = EventBatchInput.from_dict(body)
    sent = model.to_dict()["events"]
    refused = refused_indexes(sent)

    response = create_batch_events.sync_detailed(client=lago, body=model)

    if refused:
        assert response.status_code == 422
        assert isinstance(response.parsed, ApiErrorUnprocessableEntity)
        assert set(response.parsed.to_dict()["error_details"]) == refused
        assert state.lago.events() == []
        return
    assert response.status_code == 200
    assert isinstance(response.parsed, EventsResponse)
    stored = state.lago.events()
    assert json.loads(response.content)["events"] == stored
    assert [event.transaction_id for event in response.parsed.events] == [
        event["transaction_id"] for event in sent
    ]
    for event, kept in zip(sent, stored, strict=True):
        assert_same_lago_event(event, kept)
    assert_found(lago, stored)


@PROPERTY_SETTINGS
@given(body=bodies(LAGO_SCHEMA, "createEvent", GenerationMode.POSITIVE))
def test_valid_lago_events_are_stored_as_sent(
    body: dict[str, Any], state: MockState, lago: lago_api.AuthenticatedClient
) -> None:
    state.reset()
    model = EventInput.from_dict(body)
    sent = model.to_dict()["event"]

    response = create_event.sync_detailed(client=lago, body=model)

    if refused_indexes([sent]):
        assert response.status_code == 422
        assert isinstance(response.parsed, ApiErrorUnprocessableEntity)
        return
    assert response.status_code == 200
    assert isinstance(response.parsed, EventResponse)
    [stored] = state.lago.events()
    assert json.loads(response.content) == {"event": stored}
    assert response.parsed.event.transaction_id == sent["transaction_id"]
    assert_same_lago_event(sent, stored)
    assert_found(lago, [stored])


CATALOGUE_PAIRS = st.tuples(
    st.sampled_from(["seats", "api_calls", "storage_gb", "unknown_metric"]),
    st.sampled_from(["sub_acme_growth", "sub_globex_starter", "sub_unknown"]),
)


@PROPERTY_SETTINGS
@given(body=bodies(LAGO_SCHEMA, "eventEstimateFees", GenerationMode.POSITIVE), pair=CATALOGUE_PAIRS)
def test_valid_fee_estimates_answer_a_documented_model(
    body: dict[str, Any], pair: tuple[str, str], lago: lago_api.AuthenticatedClient
) -> None:
    # Half the time aim at the catalogue, so priced answers are exercised and not only 404s.
    if len(body["event"]["code"]) % 2 == 0:
        body["event"]["code"], body["event"]["external_subscription_id"] = pair
    model = EventEstimateFeesInput.from_dict(body)

    response = event_estimate_fees.sync_detailed(client=lago, body=model)

    expected = {200: FeesResponse, 404: ApiErrorNotFound, 422: ApiErrorUnprocessableEntity}
    assert response.status_code in expected
    parsed = response.parsed
    assert isinstance(parsed, expected[response.status_code])
    assert parsed is not None
    assert parsed.to_dict() == json.loads(response.content)


@frozen
class Refusal:
    """An operation's request schema, and the refusals its spec documents with their generated models."""

    provider: str
    path: str
    request: jsonschema_rs.Validator
    models: dict[int, Any]

    @property
    def spec(self) -> dict[str, Any]:
        return TOGAI_SPEC if self.provider == "togai" else LAGO_SPEC

    def answer_schema(self, status: int) -> jsonschema_rs.Validator:
        answer = self.spec["paths"][self.path]["post"]["responses"][str(status)]
        if "$ref" in answer:
            answer = self.spec["components"]["responses"][answer["$ref"].rsplit("/", 1)[-1]]
        return compile_schema(self.spec, answer["content"]["application/json"]["schema"])


REFUSALS = {
    "ingest": Refusal(
        "togai",
        "/ingest",
        compile_component(TOGAI_SPEC, "IngestEventRequest"),
        {400: ErrorResponse, 422: ErrorResponse},
    ),
    "ingestBatch": Refusal(
        "togai",
        "/ingestBatch",
        compile_component(TOGAI_SPEC, "IngestBatchEventRequest"),
        {207: IngestEventResponse, 400: ErrorResponse, 422: ErrorResponse},
    ),
    "createEvent": Refusal(
        "lago",
        "/events",
        compile_component(LAGO_SPEC, "EventInput"),
        {400: ApiErrorBadRequest, 422: ApiErrorUnprocessableEntity},
    ),
    "createBatchEvents": Refusal(
        "lago",
        "/events/batch",
        compile_component(LAGO_SPEC, "EventBatchInput"),
        {400: ApiErrorBadRequest, 422: ApiErrorUnprocessableEntity},
    ),
    "eventEstimateFees": Refusal(
        "lago",
        "/events/estimate_fees",
        compile_component(LAGO_SPEC, "EventEstimateFeesInput"),
        # A blank subscription or code is a 404 there, as the server checks them before any field.
        {400: ApiErrorBadRequest, 404: ApiErrorNotFound, 422: ApiErrorUnprocessableEntity},
    ),
}


def labelled(operation_id: str, refusal: Refusal) -> st.SearchStrategy[tuple[str, Any]]:
    schema = TOGAI_SCHEMA if refusal.provider == "togai" else LAGO_SCHEMA
    return st.tuples(st.just(operation_id), bodies(schema, operation_id, GenerationMode.NEGATIVE))


def invalid_bodies() -> st.SearchStrategy[tuple[str, Any]]:
    return st.one_of(*(labelled(operation_id, refusal) for operation_id, refusal in REFUSALS.items()))


def _objects_only(body: object) -> object:
    if isinstance(body, dict) and isinstance(body.get("events"), list):
        return {**body, "events": [event for event in body["events"] if isinstance(event, dict)]}
    return body


@settings(PROPERTY_SETTINGS, max_examples=60)
@given(generated=invalid_bodies())
def test_invalid_payloads_are_refused_in_the_provider_shape(
    generated: tuple[str, Any],
    state: MockState,
    togai: togai_api.AuthenticatedClient,
    lago: lago_api.AuthenticatedClient,
) -> None:
    operation_id, body = generated
    refusal = REFUSALS[operation_id]
    # Schemathesis may negate something other than the body; only bodies the spec forbids are of interest here.
    assume(isinstance(body, bytes) or not refusal.request.is_valid(body))
    # Lago drops the items of a batch that are not objects (Rails' parameter filter) and takes the rest.
    assume(
        isinstance(body, bytes)
        or operation_id != "createBatchEvents"
        or not refusal.request.is_valid(_objects_only(body))
    )
    http = (togai if refusal.provider == "togai" else lago).get_httpx_client()
    state.reset()

    if isinstance(body, bytes):
        response = http.post(refusal.path, content=body, headers={"Content-Type": "application/json"})
    else:
        response = http.post(refusal.path, json=body)

    assert response.status_code in refusal.models, response.text
    answer = response.json()
    assert [error.message for error in refusal.answer_schema(response.status_code).iter_errors(answer)] == []
    # The generated model reads the answer and writes it back unchanged.
    assert refusal.models[response.status_code].from_dict(answer).to_dict() == answer
    if response.status_code != 207:
        assert state.togai.events() == state.lago.events() == []
