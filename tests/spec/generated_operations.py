"""The six generated operations behind one calling convention, for the client tests.

Each operation is called with a `Wiring` (base URL, transport, strictness) and one
argument taken from the spec: the request example for a body, or the path value.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from http import HTTPStatus
from types import ModuleType
from typing import Any, Protocol

import httpx

import lago_api
import lago_api.errors
import lago_api.models
import togai_api
import togai_api.errors
import togai_api.models
from lago_api.api.events import create_batch_events, create_event, event_estimate_fees, find_event
from lago_api.models import EventBatchInput, EventEstimateFeesInput, EventInput
from togai_api.api.event_ingestion import ingest, ingest_batch
from togai_api.models import IngestBatchEventRequest, IngestEventRequest

TOKEN = "canary-token"


class ApiResponse(Protocol):
    status_code: HTTPStatus
    content: bytes
    parsed: Any


@dataclass(frozen=True)
class Wiring:
    base_url: str
    transport: httpx.MockTransport
    raise_on_unexpected_status: bool = True

    def togai(self) -> togai_api.AuthenticatedClient:
        return togai_api.AuthenticatedClient(
            base_url=self.base_url,
            token=TOKEN,
            raise_on_unexpected_status=self.raise_on_unexpected_status,
            httpx_args={"transport": self.transport},
        )

    def lago(self) -> lago_api.AuthenticatedClient:
        return lago_api.AuthenticatedClient(
            base_url=self.base_url,
            token=TOKEN,
            raise_on_unexpected_status=self.raise_on_unexpected_status,
            httpx_args={"transport": self.transport},
        )


def _ingest(wiring: Wiring, argument: Any) -> ApiResponse:
    with wiring.togai() as client:
        return ingest.sync_detailed(client=client, body=IngestEventRequest.from_dict(argument))


async def _ingest_async(wiring: Wiring, argument: Any) -> ApiResponse:
    async with wiring.togai() as client:
        return await ingest.asyncio_detailed(client=client, body=IngestEventRequest.from_dict(argument))


def _ingest_batch(wiring: Wiring, argument: Any) -> ApiResponse:
    with wiring.togai() as client:
        return ingest_batch.sync_detailed(client=client, body=IngestBatchEventRequest.from_dict(argument))


async def _ingest_batch_async(wiring: Wiring, argument: Any) -> ApiResponse:
    async with wiring.togai() as client:
        return await ingest_batch.asyncio_detailed(
            client=client, body=IngestBatchEventRequest.from_dict(argument)
        )


def _create_event(wiring: Wiring, argument: Any) -> ApiResponse:
    with wiring.lago() as client:
        return create_event.sync_detailed(client=client, body=EventInput.from_dict(argument))


async def _create_event_async(wiring: Wiring, argument: Any) -> ApiResponse:
    async with wiring.lago() as client:
        return await create_event.asyncio_detailed(client=client, body=EventInput.from_dict(argument))


def _create_batch_events(wiring: Wiring, argument: Any) -> ApiResponse:
    with wiring.lago() as client:
        return create_batch_events.sync_detailed(client=client, body=EventBatchInput.from_dict(argument))


async def _create_batch_events_async(wiring: Wiring, argument: Any) -> ApiResponse:
    async with wiring.lago() as client:
        return await create_batch_events.asyncio_detailed(
            client=client, body=EventBatchInput.from_dict(argument)
        )


def _event_estimate_fees(wiring: Wiring, argument: Any) -> ApiResponse:
    with wiring.lago() as client:
        return event_estimate_fees.sync_detailed(
            client=client, body=EventEstimateFeesInput.from_dict(argument)
        )


async def _event_estimate_fees_async(wiring: Wiring, argument: Any) -> ApiResponse:
    async with wiring.lago() as client:
        return await event_estimate_fees.asyncio_detailed(
            client=client, body=EventEstimateFeesInput.from_dict(argument)
        )


def _find_event(wiring: Wiring, argument: Any) -> ApiResponse:
    with wiring.lago() as client:
        return find_event.sync_detailed(argument, client=client)


async def _find_event_async(wiring: Wiring, argument: Any) -> ApiResponse:
    async with wiring.lago() as client:
        return await find_event.asyncio_detailed(argument, client=client)


@dataclass(frozen=True)
class GeneratedOperation:
    provider: str
    operation_id: str
    call: Callable[[Wiring, Any], ApiResponse]
    call_async: Callable[[Wiring, Any], Coroutine[Any, Any, ApiResponse]]
    models: ModuleType
    unexpected_status: type[Exception]

    def __str__(self) -> str:
        return f"{self.provider}:{self.operation_id}"


OPERATIONS = [
    GeneratedOperation(
        "togai", "ingest", _ingest, _ingest_async, togai_api.models, togai_api.errors.UnexpectedStatus
    ),
    GeneratedOperation(
        "togai",
        "ingestBatch",
        _ingest_batch,
        _ingest_batch_async,
        togai_api.models,
        togai_api.errors.UnexpectedStatus,
    ),
    GeneratedOperation(
        "lago",
        "createEvent",
        _create_event,
        _create_event_async,
        lago_api.models,
        lago_api.errors.UnexpectedStatus,
    ),
    GeneratedOperation(
        "lago",
        "createBatchEvents",
        _create_batch_events,
        _create_batch_events_async,
        lago_api.models,
        lago_api.errors.UnexpectedStatus,
    ),
    GeneratedOperation(
        "lago",
        "eventEstimateFees",
        _event_estimate_fees,
        _event_estimate_fees_async,
        lago_api.models,
        lago_api.errors.UnexpectedStatus,
    ),
    GeneratedOperation(
        "lago", "findEvent", _find_event, _find_event_async, lago_api.models, lago_api.errors.UnexpectedStatus
    ),
]

MODELS = {"togai": togai_api.models, "lago": lago_api.models}


def model_class(provider: str, schema_name: str) -> type[Any]:
    """The generated class for a components/schemas name (the generator keeps the name)."""
    cls = getattr(MODELS[provider], schema_name, None)
    assert isinstance(cls, type), f"{provider}_api.models has no class for schema {schema_name}"
    return cls
