from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_response import ErrorResponse
from ...models.ingest_event_request import IngestEventRequest
from ...models.ingest_event_response import IngestEventResponse
from ...types import Response


def _get_kwargs(
    *,
    body: IngestEventRequest,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/ingest",
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorResponse | IngestEventResponse | None:
    if response.status_code == 202:
        response_202 = IngestEventResponse.from_dict(response.json())

        return response_202

    if response.status_code == 400:
        response_400 = ErrorResponse.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = ErrorResponse.from_dict(response.json())

        return response_401

    if response.status_code == 422:
        response_422 = ErrorResponse.from_dict(response.json())

        return response_422

    if response.status_code == 429:
        response_429 = ErrorResponse.from_dict(response.json())

        return response_429

    if response.status_code == 503:
        response_503 = ErrorResponse.from_dict(response.json())

        return response_503

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[ErrorResponse | IngestEventResponse]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient | Client,
    body: IngestEventRequest,
) -> Response[ErrorResponse | IngestEventResponse]:
    """Ingest one event

     Accepts a single usage event for asynchronous processing by the usage
    meters and price plans of the account. A `202` means the event was
    accepted for processing; a re-sent event with an `id` that was already
    accepted is answered with `202` as well and is not billed twice.

    Args:
        body (IngestEventRequest): One event to ingest.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | IngestEventResponse]
    """

    kwargs = _get_kwargs(
        body=body,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient | Client,
    body: IngestEventRequest,
) -> ErrorResponse | IngestEventResponse | None:
    """Ingest one event

     Accepts a single usage event for asynchronous processing by the usage
    meters and price plans of the account. A `202` means the event was
    accepted for processing; a re-sent event with an `id` that was already
    accepted is answered with `202` as well and is not billed twice.

    Args:
        body (IngestEventRequest): One event to ingest.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | IngestEventResponse
    """

    return sync_detailed(
        client=client,
        body=body,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient | Client,
    body: IngestEventRequest,
) -> Response[ErrorResponse | IngestEventResponse]:
    """Ingest one event

     Accepts a single usage event for asynchronous processing by the usage
    meters and price plans of the account. A `202` means the event was
    accepted for processing; a re-sent event with an `id` that was already
    accepted is answered with `202` as well and is not billed twice.

    Args:
        body (IngestEventRequest): One event to ingest.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | IngestEventResponse]
    """

    kwargs = _get_kwargs(
        body=body,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient | Client,
    body: IngestEventRequest,
) -> ErrorResponse | IngestEventResponse | None:
    """Ingest one event

     Accepts a single usage event for asynchronous processing by the usage
    meters and price plans of the account. A `202` means the event was
    accepted for processing; a re-sent event with an `id` that was already
    accepted is answered with `202` as well and is not billed twice.

    Args:
        body (IngestEventRequest): One event to ingest.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | IngestEventResponse
    """

    return (
        await asyncio_detailed(
            client=client,
            body=body,
        )
    ).parsed
