"""Async ``send()`` of an iterable that says it is sized but cannot tell its length (a progress bar)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import pytest

from billing_events import AsyncTogai, RetryPolicy

from .scripted import accepted, togai_event


class Progress:
    """What ``tqdm(iterable)`` is: its ``__len__`` is its iterable's, or ``total``, or None.

    ``tqdm(generator)`` without ``total=`` has a ``__len__`` that returns None, so ``len()``
    raises TypeError, while iterating it gives every event.
    """

    def __init__(self, iterable: Iterable[Any], total: Any = None) -> None:
        self.iterable = iterable
        self.total = total

    def __iter__(self) -> Iterator[Any]:
        yield from self.iterable

    def __len__(self) -> Any:
        if hasattr(self.iterable, "__len__"):
            return len(self.iterable)  # type: ignore[arg-type]
        return self.total


@pytest.mark.parametrize("total", [None, 40.0], ids=["no-total", "float-total"])
def test_an_async_send_of_a_progress_bar_over_a_generator_sends_every_event(
    fast_retry: RetryPolicy, total: Any
) -> None:
    async def run() -> list[bool]:
        async with AsyncTogai(
            "spread-test-token",
            base_url="http://togai.local",
            transport=httpx.MockTransport(accepted),
            max_in_flight=4,
            retry=fast_retry,
            max_requests_per_second=None,
        ) as client:
            report = await client.send(Progress((togai_event(n) for n in range(40)), total=total))
            return [status.delivered for status in report.statuses]

    assert asyncio.run(run()) == [True] * 40
