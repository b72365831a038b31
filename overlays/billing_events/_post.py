"""The batch POST: the client's transport and hooks, without ``httpx.Client.send``'s machinery.

Every batch goes out through here, sync or async. ``Client.send`` costs about 65 µs a
request on a 2-core machine, for work a batch post never needs: the auth-flow and
redirect generators, a stream wrapper, a log record, and a cookie pass that builds two
``urllib`` objects per answer only for our empty jar to ignore them. Skipping it took a
``send()`` of 100-event Lago batches from 6.80 to 6.15 µs of CPU an event, and Togai's
500-event batches from 3.46 to 3.16 (medians of four runs against the bench's sink).

What the post keeps is what the client gives a request:

- ``build_request``: the client's headers (the token, the User-Agent) and timeouts;
- its event hooks, which hold the pacer: every request waits for its budget, every answer adapts;
- the client's own transport (``_transport.bounded``: deadlines, caps, no echoed token);
- the answer read whole, and closed on any error;
- a closed client refuses (``ClientClosedError``), also one closed while the request waited for its
  rate budget: nothing was sent, so its events end ``failed``;
- a request hook that raises (one a user added to ``client.http.event_hooks``, say) raises
  ``RequestHookError`` in its place: the request never left, so its events end ``failed`` too.
  httpx's own errors pass as they are (the pacer's ``BudgetTimeout`` is retried).

Redirects are never followed (nor were they by the client): a 3xx comes back as it is.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import httpx

from ._transport import scrub
from .errors import TransportError
from .text import shorten


class ClientClosedError(RuntimeError):
    """The client was closed before the batch went out: nothing was sent."""

    def __init__(self) -> None:
        super().__init__("the client is closed; nothing was sent")


Http = TypeVar("Http", httpx.Client, httpx.AsyncClient)
Transport = TypeVar("Transport", httpx.BaseTransport, httpx.AsyncBaseTransport)


class RequestHookError(TransportError):
    """A request hook raised before the request left: nothing was sent."""


def _hook_failed(authorization: str, exc: Exception) -> RequestHookError:
    """The error that takes a hook's place: its type and its message, clipped and without the token.

    ``authorization`` is the header as it was before the hooks ran: a hook may have moved or removed it.
    """
    try:
        text = str(exc)
    except Exception:
        text = "(its message could not be read)"
    return RequestHookError(
        f"a request hook raised {type(exc).__name__} before the request left: {shorten(scrub(text, authorization))}"
    )


class _Poster(Generic[Http, Transport]):
    """A client and the transport it was built with (``_base.ClientBase._api_client``)."""

    def __init__(self, http: Http, transport: Transport) -> None:
        self.http: Http = http
        self.transport: Transport = transport

    @property
    def base_url(self) -> httpx.URL:
        return self.http.base_url

    def _request(
        self, url: httpx.URL, content: bytes, headers: dict[str, str], extensions: dict[str, object]
    ) -> httpx.Request:
        self._still_open()
        return self.http.build_request("POST", url, content=content, headers=headers, extensions=extensions)

    def _still_open(self) -> None:
        """Before the request is built, and again after the hooks: the client may have been closed while
        the request waited for its rate budget."""
        if self.http.is_closed:
            raise ClientClosedError


class BatchPoster(_Poster[httpx.Client, httpx.BaseTransport]):
    """POSTs of one sync client."""

    def post(
        self, url: httpx.URL, content: bytes, headers: dict[str, str], extensions: dict[str, object]
    ) -> httpx.Response:
        request = self._request(url, content, headers, extensions)
        hooks = self.http.event_hooks
        authorization = request.headers.get("authorization", "")
        failed: RequestHookError | None = None
        try:
            for hook in hooks["request"]:
                hook(request)
        except httpx.HTTPError:
            raise
        except Exception as exc:
            failed = _hook_failed(authorization, exc)
        if failed is not None:
            raise failed  # outside the handler: no context that keeps the hook's own, unscrubbed message
        self._still_open()
        response = self.transport.handle_request(request)
        try:
            response.request = request
            for hook in hooks["response"]:
                hook(response)
            response.read()
        except BaseException:
            response.close()
            raise
        return response


class AsyncBatchPoster(_Poster[httpx.AsyncClient, httpx.AsyncBaseTransport]):
    """The asyncio twin of ``BatchPoster``."""

    async def post(
        self, url: httpx.URL, content: bytes, headers: dict[str, str], extensions: dict[str, object]
    ) -> httpx.Response:
        request = self._request(url, content, headers, extensions)
        hooks = self.http.event_hooks
        authorization = request.headers.get("authorization", "")
        failed: RequestHookError | None = None
        try:
            for hook in hooks["request"]:
                await hook(request)
        except httpx.HTTPError:
            raise
        except Exception as exc:
            failed = _hook_failed(authorization, exc)
        if failed is not None:
            raise failed  # outside the handler: no context that keeps the hook's own, unscrubbed message
        self._still_open()
        response = await self.transport.handle_async_request(request)
        try:
            response.request = request
            for hook in hooks["response"]:
                await hook(response)
            await response.aread()
        except BaseException:
            await response.aclose()
            raise
        return response
