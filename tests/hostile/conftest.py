"""Helpers of the hostile tests; the hostile server fixture itself is in tests/conftest.py."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from billing_events import partial_report

TOKEN = "hostile-canary-token-5c1e9a7b3d"


async def statuses_once_cancelled(sending: asyncio.Future[Any]) -> list[str]:
    """Cancel a running ``send()``: the statuses of the partial report its cancellation carries."""
    sending.cancel()
    with pytest.raises(asyncio.CancelledError) as caught:
        await sending
    report = partial_report(caught.value)
    assert report is not None
    return [outcome.status.value for outcome in report]


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose connects never complete: its listener's accept queue is full, so the SYNs are dropped
    (as a firewall that drops packets does)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
