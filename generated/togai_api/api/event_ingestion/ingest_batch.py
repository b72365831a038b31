from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_response import ErrorResponse
from ...models.ingest_batch_event_request import IngestBatchEventRequest
from ...models.ingest_event_response import IngestEventResponse
from ...types import Response


def _get_kwargs(
    *,
    body: IngestBatchEventRequest,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/ingestBatch",
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

    if response.status_code == 207:
        response_207 = IngestEventResponse.from_dict(response.json())

        return response_207

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
    body: IngestBatchEventRequest,
) -> Response[ErrorResponse | IngestEventResponse]:
    """Ingest up to 500 events

     Accepts between 1 and 500 events in one request. Events are judged one
    by one: when every event is accepted the answer is `202`; when some are
    rejected the answer is `207` and the accepted events are kept;
    `details.rejectedEvents`, when present, names each rejected event by
    its index in the request (real Togai may leave it out). When no event
    is acceptable the answer is `400`.

    Args:
        body (IngestBatchEventRequest): Between 1 and 500 events to ingest.

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
    body: IngestBatchEventRequest,
) -> ErrorResponse | IngestEventResponse | None:
    """Ingest up to 500 events

     Accepts between 1 and 500 events in one request. Events are judged one
    by one: when every event is accepted the answer is `202`; when some are
    rejected the answer is `207` and the accepted events are kept;
    `details.rejectedEvents`, when present, names each rejected event by
    its index in the request (real Togai may leave it out). When no event
    is acceptable the answer is `400`.

    Args:
        body (IngestBatchEventRequest): Between 1 and 500 events to ingest.

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
    body: IngestBatchEventRequest,
) -> Response[ErrorResponse | IngestEventResponse]:
    """Ingest up to 500 events

     Accepts between 1 and 500 events in one request. Events are judged one
    by one: when every event is accepted the answer is `202`; when some are
    rejected the answer is `207` and the accepted events are kept;
    `details.rejectedEvents`, when present, names each rejected event by
    its index in the request (real Togai may leave it out). When no event
    is acceptable the answer is `400`.

    Args:
        body (IngestBatchEventRequest): Between 1 and 500 events to ingest.

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
    body: IngestBatchEventRequest,
) -> ErrorResponse | IngestEventResponse | None:
    """Ingest up to 500 events

     Accepts between 1 and 500 events in one request. Events are judged one
    by one: when every event is accepted the answer is `202`; when some are
    rejected the answer is `207` and the accepted events are kept;
    `details.rejectedEvents`, when present, names each rejected event by
    its index in the request (real Togai may leave it out). When no event
    is acceptable the answer is `400`.

    Args:
        body (IngestBatchEventRequest): Between 1 and 500 events to ingest.

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
