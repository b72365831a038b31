"""The specs are valid OpenAPI 3.1 and follow the house rules of design.md."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Mapping
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from .openapi_documents import PROVIDERS, SpecDocument, load_spec, pointer_join

# The generated module each operationId must produce, under <package>.api.<tag>.
GENERATED_OPERATIONS = {
    "togai": {
        "ingest": "togai_api.api.event_ingestion.ingest",
        "ingestBatch": "togai_api.api.event_ingestion.ingest_batch",
    },
    "lago": {
        "createEvent": "lago_api.api.events.create_event",
        "createBatchEvents": "lago_api.api.events.create_batch_events",
        "eventEstimateFees": "lago_api.api.events.event_estimate_fees",
        "findEvent": "lago_api.api.events.find_event",
    },
}

DOCUMENTED_SERVERS = {
    "togai": ["https://api.togai.com", "https://sandbox-api.togai.com"],
    "lago": ["https://api.getlago.com/api/v1", "https://api.eu.getlago.com/api/v1", "{origin}/api/v1"],
}

BATCH_LIMITS = {
    ("togai", "ingestBatch"): ("IngestBatchEventRequest", "events", 500),
    ("lago", "createBatchEvents"): ("EventBatchInput", "events", 100),
}


@pytest.fixture(params=PROVIDERS)
def spec(request: pytest.FixtureRequest) -> SpecDocument:
    provider: str = request.param
    return load_spec(provider)


def test_spec_is_valid_openapi_3_1(spec: SpecDocument) -> None:
    assert spec.document["openapi"].startswith("3.1.")
    validate(spec.document, cls=OpenAPIV31SpecValidator)


def test_status_codes_are_quoted_strings(spec: SpecDocument) -> None:
    # PyYAML reads a bare `202:` as an int, which openapi-python-client rejects.
    for operation in spec.operations():
        for status in operation.node["responses"]:
            assert isinstance(status, str), (
                f"{spec.provider}.yaml {operation.operation_id}: status {status!r} must be quoted"
            )
            assert re.fullmatch(r"[1-5][0-9][0-9]", status), f"{operation.operation_id}: {status!r}"


def test_no_default_responses(spec: SpecDocument) -> None:
    for operation in spec.operations():
        assert "default" not in operation.node["responses"], (
            f"{spec.provider}.yaml {operation.operation_id}: a `default` response hides unexpected statuses"
        )


def _is_object_schema(schema: Mapping[str, Any]) -> bool:
    declared = schema.get("type")
    types = declared if isinstance(declared, list) else [declared]
    return "object" in types or "properties" in schema


def test_every_object_schema_states_additional_properties(spec: SpecDocument) -> None:
    object_schemas = [(pointer, schema) for pointer, schema in spec.schemas() if _is_object_schema(schema)]
    assert object_schemas, "the walk over schemas found no object schema at all"
    missing = [pointer for pointer, schema in object_schemas if "additionalProperties" not in schema]
    assert not missing, (
        f"{spec.provider}.yaml: object schemas without explicit additionalProperties: {missing}"
    )


def test_operation_ids_match_generated_functions(spec: SpecDocument) -> None:
    expected = GENERATED_OPERATIONS[spec.provider]
    assert sorted(op.operation_id for op in spec.operations()) == sorted(expected)
    for module_name in expected.values():
        module = importlib.import_module(module_name)
        for function in ("sync", "sync_detailed", "asyncio", "asyncio_detailed"):
            assert callable(getattr(module, function, None)), f"{module_name}.{function} is missing"


def test_servers_are_the_documented_base_urls(spec: SpecDocument) -> None:
    assert [server["url"] for server in spec.document["servers"]] == DOCUMENTED_SERVERS[spec.provider]


def test_every_operation_uses_bearer_auth(spec: SpecDocument) -> None:
    schemes = spec.document["components"]["securitySchemes"]
    for operation in spec.operations():
        requirements = operation.node.get("security", spec.document.get("security"))
        assert requirements, f"{operation.operation_id} has no security requirement"
        for requirement in requirements:
            for name in requirement:
                assert schemes[name]["type"] == "http"
                assert schemes[name]["scheme"].lower() == "bearer"


def test_links_point_at_operations_of_the_same_spec(spec: SpecDocument) -> None:
    operation_ids = {op.operation_id for op in spec.operations()}
    for operation in spec.operations():
        for response_pointer in spec.response_pointers(operation).values():
            for name, link in spec.at(response_pointer).get("links", {}).items():
                assert link["operationId"] in operation_ids, f"{operation.operation_id} link {name}"


@pytest.mark.parametrize(("provider", "operation_id"), list(BATCH_LIMITS))
def test_batch_request_limits_event_count(provider: str, operation_id: str) -> None:
    spec = load_spec(provider)
    schema_name, array_property, limit = BATCH_LIMITS[provider, operation_id]
    body = spec.request_body_pointer(spec.operation(operation_id))
    assert body is not None
    assert spec.schema_name_at(pointer_join(body, "content", "application/json", "schema")) == schema_name
    events = spec.document["components"]["schemas"][schema_name]["properties"][array_property]
    assert events["type"] == "array"
    assert events["minItems"] == 1
    assert events["maxItems"] == limit


@pytest.mark.parametrize("operation_id", ["ingest", "ingestBatch"])
def test_togai_request_bodies_declare_a_byte_limit(operation_id: str) -> None:
    spec = load_spec("togai")
    body = spec.request_body_pointer(spec.operation(operation_id))
    assert body is not None
    limit = spec.at(body).get("x-max-body-bytes")
    assert isinstance(limit, int)
    assert not isinstance(limit, bool)
    assert limit == 1_048_576, "the info description promises 1 MiB"


def test_togai_byte_limit_holds_a_full_batch_of_realistic_events() -> None:
    spec = load_spec("togai")
    body = spec.request_body_pointer(spec.operation("ingestBatch"))
    assert body is not None
    (example,) = [
        e.value for e in spec.examples() if e.operation_id == "ingestBatch" and e.location == "request"
    ]
    largest_event = max(example["events"], key=lambda event: len(json.dumps(event)))
    full_batch = json.dumps({"events": [largest_event] * 500}).encode()
    assert len(full_batch) <= spec.at(body)["x-max-body-bytes"]
