"""Helpers of the hostile tests; the hostile server fixture itself is in tests/conftest.py."""

from __future__ import annotations

import asyncio
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
