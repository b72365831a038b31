from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.api_error_bad_request import ApiErrorBadRequest
from ...models.api_error_forbidden import ApiErrorForbidden
from ...models.api_error_not_found import ApiErrorNotFound
from ...models.api_error_service_unavailable import ApiErrorServiceUnavailable
from ...models.api_error_too_many_requests import ApiErrorTooManyRequests
from ...models.api_error_unauthorized import ApiErrorUnauthorized
from ...models.api_error_unprocessable_entity import ApiErrorUnprocessableEntity
from ...models.event_estimate_fees_input import EventEstimateFeesInput
from ...models.fees_response import FeesResponse
from ...types import Response


def _get_kwargs(
    *,
    body: EventEstimateFeesInput,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/events/estimate_fees",
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
    | ApiErrorNotFound
    | ApiErrorServiceUnavailable
    | ApiErrorTooManyRequests
    | ApiErrorUnauthorized
    | ApiErrorUnprocessableEntity
    | FeesResponse
    | None
):
    if response.status_code == 200:
        response_200 = FeesResponse.from_dict(response.json())

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

    if response.status_code == 404:
        response_404 = ApiErrorNotFound.from_dict(response.json())

        return response_404

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
    | ApiErrorNotFound
    | ApiErrorServiceUnavailable
    | ApiErrorTooManyRequests
    | ApiErrorUnauthorized
    | ApiErrorUnprocessableEntity
    | FeesResponse
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
    body: EventEstimateFeesInput,
) -> Response[
    ApiErrorBadRequest
    | ApiErrorForbidden
    | ApiErrorNotFound
    | ApiErrorServiceUnavailable
    | ApiErrorTooManyRequests
    | ApiErrorUnauthorized
    | ApiErrorUnprocessableEntity
    | FeesResponse
]:
    """Estimate the pay-in-advance fees of an event

     Computes, without storing anything, the fees an event would create for
    the pay-in-advance charges of its billable metric on a subscription.
    The event may carry the same keys as a stored one; `transaction_id`
    is overridden by the server, and `precise_total_amount_cents` prices
    a dynamic-pricing charge (without it, that estimate is 0).

    Args:
        body (EventEstimateFeesInput): The event to estimate. Other top-level keys are ignored by
            the server.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ApiErrorBadRequest | ApiErrorForbidden | ApiErrorNotFound | ApiErrorServiceUnavailable | ApiErrorTooManyRequests | ApiErrorUnauthorized | ApiErrorUnprocessableEntity | FeesResponse]
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
    body: EventEstimateFeesInput,
) -> (
    ApiErrorBadRequest
    | ApiErrorForbidden
    | ApiErrorNotFound
    | ApiErrorServiceUnavailable
    | ApiErrorTooManyRequests
    | ApiErrorUnauthorized
    | ApiErrorUnprocessableEntity
    | FeesResponse
    | None
):
    """Estimate the pay-in-advance fees of an event

     Computes, without storing anything, the fees an event would create for
    the pay-in-advance charges of its billable metric on a subscription.
    The event may carry the same keys as a stored one; `transaction_id`
    is overridden by the server, and `precise_total_amount_cents` prices
    a dynamic-pricing charge (without it, that estimate is 0).

    Args:
        body (EventEstimateFeesInput): The event to estimate. Other top-level keys are ignored by
            the server.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ApiErrorBadRequest | ApiErrorForbidden | ApiErrorNotFound | ApiErrorServiceUnavailable | ApiErrorTooManyRequests | ApiErrorUnauthorized | ApiErrorUnprocessableEntity | FeesResponse
    """

    return sync_detailed(
        client=client,
        body=body,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient | Client,
    body: EventEstimateFeesInput,
) -> Response[
    ApiErrorBadRequest
    | ApiErrorForbidden
    | ApiErrorNotFound
    | ApiErrorServiceUnavailable
    | ApiErrorTooManyRequests
    | ApiErrorUnauthorized
    | ApiErrorUnprocessableEntity
    | FeesResponse
]:
    """Estimate the pay-in-advance fees of an event

     Computes, without storing anything, the fees an event would create for
    the pay-in-advance charges of its billable metric on a subscription.
    The event may carry the same keys as a stored one; `transaction_id`
    is overridden by the server, and `precise_total_amount_cents` prices
    a dynamic-pricing charge (without it, that estimate is 0).

    Args:
        body (EventEstimateFeesInput): The event to estimate. Other top-level keys are ignored by
            the server.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ApiErrorBadRequest | ApiErrorForbidden | ApiErrorNotFound | ApiErrorServiceUnavailable | ApiErrorTooManyRequests | ApiErrorUnauthorized | ApiErrorUnprocessableEntity | FeesResponse]
    """

    kwargs = _get_kwargs(
        body=body,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient | Client,
    body: EventEstimateFeesInput,
) -> (
    ApiErrorBadRequest
    | ApiErrorForbidden
    | ApiErrorNotFound
    | ApiErrorServiceUnavailable
    | ApiErrorTooManyRequests
    | ApiErrorUnauthorized
    | ApiErrorUnprocessableEntity
    | FeesResponse
    | None
):
    """Estimate the pay-in-advance fees of an event

     Computes, without storing anything, the fees an event would create for
    the pay-in-advance charges of its billable metric on a subscription.
    The event may carry the same keys as a stored one; `transaction_id`
    is overridden by the server, and `precise_total_amount_cents` prices
    a dynamic-pricing charge (without it, that estimate is 0).

    Args:
        body (EventEstimateFeesInput): The event to estimate. Other top-level keys are ignored by
            the server.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ApiErrorBadRequest | ApiErrorForbidden | ApiErrorNotFound | ApiErrorServiceUnavailable | ApiErrorTooManyRequests | ApiErrorUnauthorized | ApiErrorUnprocessableEntity | FeesResponse
    """

    return (
        await asyncio_detailed(
            client=client,
            body=body,
        )
    ).parsed
