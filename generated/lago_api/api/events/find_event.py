from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.api_error_forbidden import ApiErrorForbidden
from ...models.api_error_not_found import ApiErrorNotFound
from ...models.api_error_service_unavailable import ApiErrorServiceUnavailable
from ...models.api_error_too_many_requests import ApiErrorTooManyRequests
from ...models.api_error_unauthorized import ApiErrorUnauthorized
from ...models.event_response import EventResponse
from ...types import Response


def _get_kwargs(
    transaction_id: str,
) -> dict[str, Any]:

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/events/{transaction_id}".format(
            transaction_id=quote(str(transaction_id), safe=""),
        ),
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> (
    ApiErrorForbidden
    | ApiErrorNotFound
    | ApiErrorServiceUnavailable
    | ApiErrorTooManyRequests
    | ApiErrorUnauthorized
    | EventResponse
    | None
):
    if response.status_code == 200:
        response_200 = EventResponse.from_dict(response.json())

        return response_200

    if response.status_code == 401:
        response_401 = ApiErrorUnauthorized.from_dict(response.json())

        return response_401

    if response.status_code == 403:
        response_403 = ApiErrorForbidden.from_dict(response.json())

        return response_403

    if response.status_code == 404:
        response_404 = ApiErrorNotFound.from_dict(response.json())

        return response_404

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
    ApiErrorForbidden
    | ApiErrorNotFound
    | ApiErrorServiceUnavailable
    | ApiErrorTooManyRequests
    | ApiErrorUnauthorized
    | EventResponse
]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    transaction_id: str,
    *,
    client: AuthenticatedClient | Client,
) -> Response[
    ApiErrorForbidden
    | ApiErrorNotFound
    | ApiErrorServiceUnavailable
    | ApiErrorTooManyRequests
    | ApiErrorUnauthorized
    | EventResponse
]:
    """Read an event back

     Returns the first stored event with this `transaction_id`. A `/` in
    the identifier must be sent URL-encoded as `%2F`.

    Args:
        transaction_id (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ApiErrorForbidden | ApiErrorNotFound | ApiErrorServiceUnavailable | ApiErrorTooManyRequests | ApiErrorUnauthorized | EventResponse]
    """

    kwargs = _get_kwargs(
        transaction_id=transaction_id,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    transaction_id: str,
    *,
    client: AuthenticatedClient | Client,
) -> (
    ApiErrorForbidden
    | ApiErrorNotFound
    | ApiErrorServiceUnavailable
    | ApiErrorTooManyRequests
    | ApiErrorUnauthorized
    | EventResponse
    | None
):
    """Read an event back

     Returns the first stored event with this `transaction_id`. A `/` in
    the identifier must be sent URL-encoded as `%2F`.

    Args:
        transaction_id (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ApiErrorForbidden | ApiErrorNotFound | ApiErrorServiceUnavailable | ApiErrorTooManyRequests | ApiErrorUnauthorized | EventResponse
    """

    return sync_detailed(
        transaction_id=transaction_id,
        client=client,
    ).parsed


async def asyncio_detailed(
    transaction_id: str,
    *,
    client: AuthenticatedClient | Client,
) -> Response[
    ApiErrorForbidden
    | ApiErrorNotFound
    | ApiErrorServiceUnavailable
    | ApiErrorTooManyRequests
    | ApiErrorUnauthorized
    | EventResponse
]:
    """Read an event back

     Returns the first stored event with this `transaction_id`. A `/` in
    the identifier must be sent URL-encoded as `%2F`.

    Args:
        transaction_id (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ApiErrorForbidden | ApiErrorNotFound | ApiErrorServiceUnavailable | ApiErrorTooManyRequests | ApiErrorUnauthorized | EventResponse]
    """

    kwargs = _get_kwargs(
        transaction_id=transaction_id,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    transaction_id: str,
    *,
    client: AuthenticatedClient | Client,
) -> (
    ApiErrorForbidden
    | ApiErrorNotFound
    | ApiErrorServiceUnavailable
    | ApiErrorTooManyRequests
    | ApiErrorUnauthorized
    | EventResponse
    | None
):
    """Read an event back

     Returns the first stored event with this `transaction_id`. A `/` in
    the identifier must be sent URL-encoded as `%2F`.

    Args:
        transaction_id (str):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ApiErrorForbidden | ApiErrorNotFound | ApiErrorServiceUnavailable | ApiErrorTooManyRequests | ApiErrorUnauthorized | EventResponse
    """

    return (
        await asyncio_detailed(
            transaction_id=transaction_id,
            client=client,
        )
    ).parsed
