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
- a closed client refuses (``ClientClosedError``): nothing was sent, so its events end ``failed``.

Redirects are never followed (nor were they by the client): a 3xx comes back as it is.
"""

from __future__ import annotations

import httpx


class ClientClosedError(RuntimeError):
    """The client was closed before the batch went out: nothing was sent."""

    def __init__(self) -> None:
        super().__init__("the client is closed; nothing was sent")


class BatchPoster:
    """POSTs of one sync client."""

    def __init__(self, http: httpx.Client, transport: httpx.BaseTransport) -> None:
        self.http = http
        self.transport = transport

    @property
    def base_url(self) -> httpx.URL:
        return self.http.base_url

    def post(
        self, url: httpx.URL, content: bytes, headers: dict[str, str], extensions: dict[str, object]
    ) -> httpx.Response:
        http = self.http
        if http.is_closed:
            raise ClientClosedError
        request = http.build_request("POST", url, content=content, headers=headers, extensions=extensions)
        hooks = http.event_hooks
        for hook in hooks["request"]:
            hook(request)
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


class AsyncBatchPoster:
    """POSTs of one async client."""

    def __init__(self, http: httpx.AsyncClient, transport: httpx.AsyncBaseTransport) -> None:
        self.http = http
        self.transport = transport

    @property
    def base_url(self) -> httpx.URL:
        return self.http.base_url

    async def post(
        self, url: httpx.URL, content: bytes, headers: dict[str, str], extensions: dict[str, object]
    ) -> httpx.Response:
        http = self.http
        if http.is_closed:
            raise ClientClosedError
        request = http.build_request("POST", url, content=content, headers=headers, extensions=extensions)
        hooks = http.event_hooks
        for hook in hooks["request"]:
            await hook(request)
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
