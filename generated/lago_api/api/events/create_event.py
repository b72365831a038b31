from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.api_error_bad_request import ApiErrorBadRequest
from ...models.api_error_forbidden import ApiErrorForbidden
from ...models.api_error_service_unavailable import ApiErrorServiceUnavailable
from ...models.api_error_too_many_requests import ApiErrorTooManyRequests
from ...models.api_error_unauthorized import ApiErrorUnauthorized
from ...models.api_error_unprocessable_entity import ApiErrorUnprocessableEntity
from ...models.event_input import EventInput
from ...models.event_response import EventResponse
from ...types import Response


def _get_kwargs(
    *,
    body: EventInput,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/events",
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> (
    ApiErrorBadRequest
    | ApiErrorForbidden
    | ApiErrorServiceUnavailable
    | ApiErrorTooManyRequests
    | ApiErrorUnauthorized
    | ApiErrorUnprocessableEntity
    | EventResponse
    | None
):
    if response.status_code == 200:
        response_200 = EventResponse.from_dict(response.json())

        return response_200

    if response.status_code == 400:
        response_400 = ApiErrorBadRequest.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = ApiErrorUnauthorized.from_dict(response.json())

        return response_401

    if response.status_code == 403:
        response_403 = ApiErrorForbidden.from_dict(response.json())

        return response_403

    if response.status_code == 422:
        response_422 = ApiErrorUnprocessableEntity.from_dict(response.json())

        return response_422

    if response.status_code == 429:
        response_429 = ApiErrorTooManyRequests.from_dict(response.json())

        return response_429

    if response.status_code == 503:
        response_503 = ApiErrorServiceUnavailable.from_dict(response.json())

        return response_503

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[
    ApiErrorBadRequest
    | ApiErrorForbidden
    | ApiErrorServiceUnavailable
    | ApiErrorTooManyRequests
    | ApiErrorUnauthorized
    | ApiErrorUnprocessableEntity
    | EventResponse
]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient | Client,
    body: EventInput,
) -> Response[
    ApiErrorBadRequest
    | ApiErrorForbidden
    | ApiErrorServiceUnavailable
    | ApiErrorTooManyRequests
    | ApiErrorUnauthorized
    | ApiErrorUnprocessableEntity
    | EventResponse
]:
    """Send one usage event

     Stores one usage event for a subscription. Ingestion is asynchronous:
    an unknown metric code or subscription is not an HTTP error here, and
    `lago_customer_id` and `lago_subscription_id` are answered as null.

    Args:
        body (EventInput): One event to store. Other top-level keys are ignored by the server.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ApiErrorBadRequest | ApiErrorForbidden | ApiErrorServiceUnavailable | ApiErrorTooManyRequests | ApiErrorUnauthorized | ApiErrorUnprocessableEntity | EventResponse]
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
    body: EventInput,
) -> (
    ApiErrorBadRequest
    | ApiErrorForbidden
    | ApiErrorServiceUnavailable
    | ApiErrorTooManyRequests
    | ApiErrorUnauthorized
    | ApiErrorUnprocessableEntity
    | EventResponse
    | None
):
    """Send one usage event

     Stores one usage event for a subscription. Ingestion is asynchronous:
    an unknown metric code or subscription is not an HTTP error here, and
    `lago_customer_id` and `lago_subscription_id` are answered as null.

    Args:
        body (EventInput): One event to store. Other top-level keys are ignored by the server.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ApiErrorBadRequest | ApiErrorForbidden | ApiErrorServiceUnavailable | ApiErrorTooManyRequests | ApiErrorUnauthorized | ApiErrorUnprocessableEntity | EventResponse
    """

    return sync_detailed(
        client=client,
        body=body,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient | Client,
    body: EventInput,
) -> Response[
    ApiErrorBadRequest
    | ApiErrorForbidden
    | ApiErrorServiceUnavailable
    | ApiErrorTooManyRequests
    | ApiErrorUnauthorized
    | ApiErrorUnprocessableEntity
    | EventResponse
]:
    """Send one usage event

     Stores one usage event for a subscription. Ingestion is asynchronous:
    an unknown metric code or subscription is not an HTTP error here, and
    `lago_customer_id` and `lago_subscription_id` are answered as null.

    Args:
        body (EventInput): One event to store. Other top-level keys are ignored by the server.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ApiErrorBadRequest | ApiErrorForbidden | ApiErrorServiceUnavailable | ApiErrorTooManyRequests | ApiErrorUnauthorized | ApiErrorUnprocessableEntity | EventResponse]
    """

    kwargs = _get_kwargs(
        body=body,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient | Client,
    body: EventInput,
) -> (
    ApiErrorBadRequest
    | ApiErrorForbidden
    | ApiErrorServiceUnavailable
    | ApiErrorTooManyRequests
    | ApiErrorUnauthorized
    | ApiErrorUnprocessableEntity
    | EventResponse
    | None
):
    """Send one usage event

     Stores one usage event for a subscription. Ingestion is asynchronous:
    an unknown metric code or subscription is not an HTTP error here, and
    `lago_customer_id` and `lago_subscription_id` are answered as null.

    Args:
        body (EventInput): One event to store. Other top-level keys are ignored by the server.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ApiErrorBadRequest | ApiErrorForbidden | ApiErrorServiceUnavailable | ApiErrorTooManyRequests | ApiErrorUnauthorized | ApiErrorUnprocessableEntity | EventResponse
    """

    return (
        await asyncio_detailed(
            client=client,
            body=body,
        )
    ).parsed
