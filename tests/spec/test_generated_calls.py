"""The generated clients send what the specs describe and read every documented answer."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest

from lago_api.models import ApiErrorUnprocessableEntity, FieldErrors, ValidationErrorDetails
from togai_api.models import IngestDetails, IngestEventResponse, RejectedEvent
from togai_api.types import UNSET, Unset

from .generated_operations import OPERATIONS, TOKEN, ApiResponse, GeneratedOperation, Wiring, model_class
from .openapi_documents import PROVIDERS, SpecExample, load_spec

MODES = ("sync", "async")
PREFIXED_BASE_URL = "https://x.test/api/v1"


@dataclass
class FakeServer:
    """Answers every request with one canned response and remembers the requests."""

    status: int
    body: bytes = b"{}"
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, content=self.body, headers={"Content-Type": "application/json"})

    def wiring(self, base_url: str = PREFIXED_BASE_URL, *, raise_on_unexpected_status: bool = True) -> Wiring:
        return Wiring(base_url, httpx.MockTransport(self), raise_on_unexpected_status)

    @property
    def only_request(self) -> httpx.Request:
        assert len(self.requests) == 1, f"expected one request, got {len(self.requests)}"
        return self.requests[0]


def run(operation: GeneratedOperation, mode: str, wiring: Wiring, argument: Any) -> ApiResponse:
    if mode == "sync":
        return operation.call(wiring, argument)
    return asyncio.run(operation.call_async(wiring, argument))


def server_urls(provider: str) -> list[str]:
    """The spec's servers with their variables at default values."""
    urls = []
    for server in load_spec(provider).document["servers"]:
        url: str = server["url"]
        for name, variable in server.get("variables", {}).items():
            url = url.replace("{" + name + "}", variable["default"])
        urls.append(url)
    return urls


def request_arguments(operation: GeneratedOperation) -> list[tuple[str, Any]]:
    """(example name, argument) for each request example of the operation in the spec."""
    spec = load_spec(operation.provider)
    examples = [
        example
        for example in spec.examples()
        if example.operation_id == operation.operation_id and example.location in ("request", "parameter")
    ]
    return [(example.test_id.rsplit(":", 1)[1], example.value) for example in examples]


def response_examples(operation: GeneratedOperation) -> list[SpecExample]:
    return [
        example
        for example in load_spec(operation.provider).examples()
        if example.operation_id == operation.operation_id and example.location == "response"
    ]


def _request_cases() -> list[Any]:
    cases = []
    for operation in OPERATIONS:
        for name, argument in request_arguments(operation):
            for base_url in [*server_urls(operation.provider), PREFIXED_BASE_URL]:
                for mode in MODES:
                    cases.append(
                        pytest.param(
                            operation, argument, base_url, mode, id=f"{operation}:{name}:{base_url}:{mode}"
                        )
                    )
    return cases


def _response_cases() -> list[Any]:
    return [
        pytest.param(operation, example, mode, id=f"{example.test_id}:{mode}")
        for operation in OPERATIONS
        for example in response_examples(operation)
        for mode in MODES
    ]


def test_every_spec_operation_has_a_client_adapter() -> None:
    in_specs = {
        (provider, op.operation_id) for provider in PROVIDERS for op in load_spec(provider).operations()
    }
    assert in_specs == {(op.provider, op.operation_id) for op in OPERATIONS}


def test_every_operation_has_a_request_example() -> None:
    for operation in OPERATIONS:
        assert request_arguments(operation), f"{operation} has no request example to send"


@pytest.mark.parametrize(("operation", "argument", "base_url", "mode"), _request_cases())
def test_request_matches_spec(operation: GeneratedOperation, argument: Any, base_url: str, mode: str) -> None:
    spec = load_spec(operation.provider)
    spec_operation = spec.operation(operation.operation_id)
    first_status = next(iter(spec_operation.node["responses"]))
    answer = next(example for example in response_examples(operation) if example.status == first_status)
    server = FakeServer(int(first_status), json.dumps(answer.value).encode())

    run(operation, mode, server.wiring(base_url), argument)

    request = server.only_request
    assert request.method == spec_operation.method.upper()
    path = spec_operation.path
    if isinstance(argument, str):
        path = path.replace("{transaction_id}", quote(argument, safe=""))
    assert str(request.url) == base_url + path
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    body = spec.request_body_pointer(spec_operation)
    if body is None:
        assert request.content == b""
        assert "Content-Type" not in request.headers
    else:
        assert request.headers["Content-Type"] == "application/json"
        schema = f"{body}/content/application~1json/schema"
        assert spec.comparable(schema, json.loads(request.content)) == spec.comparable(schema, argument)


@pytest.mark.parametrize("mode", MODES)
def test_find_event_percent_encodes_the_transaction_id(mode: str) -> None:
    (find_event,) = [op for op in OPERATIONS if op.operation_id == "findEvent"]
    transaction_id = "txn/2024 05/é✓"
    server = FakeServer(404, b'{"status": 404, "error": "Not Found", "code": "event_not_found"}')

    run(find_event, mode, server.wiring("https://x.test/api/v1"), transaction_id)

    raw_path = server.only_request.url.raw_path
    assert raw_path == b"/api/v1/events/txn%2F2024%2005%2F%C3%A9%E2%9C%93"
    assert unquote(raw_path.decode("ascii").removeprefix("/api/v1/events/")) == transaction_id


@pytest.mark.parametrize(("operation", "example", "mode"), _response_cases())
def test_documented_response_parses_into_its_model(
    operation: GeneratedOperation, example: SpecExample, mode: str
) -> None:
    assert example.status is not None
    assert example.schema_name is not None, f"{example.test_id}: response schema should be a named schema"
    expected_class = model_class(operation.provider, example.schema_name)
    sent = json.dumps(example.value).encode()
    server = FakeServer(int(example.status), sent)

    response = run(operation, mode, server.wiring(), request_arguments(operation)[0][1])

    assert response.status_code == int(example.status)
    assert response.content == sent
    assert isinstance(response.parsed, expected_class)
    spec = example.spec
    assert spec.comparable(example.schema_pointer, response.parsed.to_dict()) == spec.comparable(
        example.schema_pointer, example.value
    )


def test_every_documented_status_has_a_response_example() -> None:
    for operation in OPERATIONS:
        spec = load_spec(operation.provider)
        documented = set(spec.operation(operation.operation_id).node["responses"])
        exemplified = {example.status for example in response_examples(operation)}
        assert documented == exemplified, (
            f"{operation}: statuses without an example: {documented - exemplified}"
        )


def _spec_example(test_id: str) -> SpecExample:
    (example,) = [e for provider in PROVIDERS for e in load_spec(provider).examples() if e.test_id == test_id]
    return example


def _operation(operation_id: str) -> GeneratedOperation:
    (operation,) = [op for op in OPERATIONS if op.operation_id == operation_id]
    return operation


def test_togai_partial_failure_names_each_rejected_event() -> None:
    example = _spec_example("togai:ingestBatch:207:application/json:oneRejected")
    batch = _operation("ingestBatch")
    server = FakeServer(207, json.dumps(example.value).encode())

    parsed = run(batch, "sync", server.wiring(), request_arguments(batch)[0][1]).parsed

    assert isinstance(parsed, IngestEventResponse)
    assert parsed.success is False
    assert parsed.status_code == 207
    assert isinstance(parsed.details, IngestDetails)
    assert not isinstance(parsed.details.rejected_events, Unset)
    (rejected,) = parsed.details.rejected_events
    assert isinstance(rejected, RejectedEvent)
    (documented,) = example.value["details"]["rejectedEvents"]
    assert rejected.index == documented["index"] == 1
    assert rejected.id == documented["id"]
    assert rejected.message == documented["message"]


def test_togai_partial_failure_without_details_still_parses() -> None:
    # Togai documents `details` as free-form; a 207 without the project's shape must not break the client.
    batch = _operation("ingestBatch")
    server = FakeServer(207, b'{"success": false, "details": {"note": "some rejected"}}')

    parsed = run(batch, "async", server.wiring(), request_arguments(batch)[0][1]).parsed

    assert isinstance(parsed, IngestEventResponse)
    assert isinstance(parsed.details, IngestDetails)
    assert parsed.details.rejected_events is UNSET
    assert parsed.details["note"] == "some rejected"


def test_lago_batch_rejection_is_keyed_by_event_index() -> None:
    example = _spec_example("lago:createBatchEvents:422:application/json:badIndex")
    batch = _operation("createBatchEvents")
    server = FakeServer(422, json.dumps(example.value).encode())

    parsed = run(batch, "sync", server.wiring(), request_arguments(batch)[0][1]).parsed

    assert isinstance(parsed, ApiErrorUnprocessableEntity)
    assert parsed.code == "validation_errors"
    assert isinstance(parsed.error_details, ValidationErrorDetails)
    assert parsed.error_details.additional_keys == ["1"]
    second_event = parsed.error_details["1"]
    assert isinstance(second_event, FieldErrors)
    assert second_event["timestamp"] == ["invalid_format"]


def test_lago_field_errors_of_a_single_event_are_lists() -> None:
    example = _spec_example("lago:createEvent:422:application/json:duplicate")
    create = _operation("createEvent")
    server = FakeServer(422, json.dumps(example.value).encode())

    parsed = run(create, "async", server.wiring(), request_arguments(create)[0][1]).parsed

    assert isinstance(parsed, ApiErrorUnprocessableEntity)
    assert isinstance(parsed.error_details, ValidationErrorDetails)
    assert parsed.error_details["transaction_id"] == ["value_already_exist"]


def test_lago_rejection_with_a_message_string_keeps_the_string() -> None:
    example = _spec_example("lago:createEvent:422:application/json:expression")
    create = _operation("createEvent")
    server = FakeServer(422, json.dumps(example.value).encode())

    parsed = run(create, "sync", server.wiring(), request_arguments(create)[0][1]).parsed

    assert isinstance(parsed, ApiErrorUnprocessableEntity)
    assert isinstance(parsed.error_details, str)
    assert parsed.error_details == example.value["error_details"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("operation", OPERATIONS, ids=str)
def test_undocumented_status_raises_when_strict(operation: GeneratedOperation, mode: str) -> None:
    server = FakeServer(500, b'{"message": "internal error"}')

    with pytest.raises(operation.unexpected_status) as raised:
        run(operation, mode, server.wiring(), request_arguments(operation)[0][1])

    assert getattr(raised.value, "status_code", None) == 500
    assert getattr(raised.value, "content", None) == b'{"message": "internal error"}'


@pytest.mark.parametrize("operation", OPERATIONS, ids=str)
def test_undocumented_status_is_unparsed_when_lenient(operation: GeneratedOperation) -> None:
    server = FakeServer(500, b'{"message": "internal error"}')

    response = run(
        operation, "sync", server.wiring(raise_on_unexpected_status=False), request_arguments(operation)[0][1]
    )

    assert response.status_code == 500
    assert response.parsed is None
