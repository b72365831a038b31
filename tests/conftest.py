"""Fixtures every test directory shares."""

from __future__ import annotations

import pytest

from billing_events import RetryPolicy


@pytest.fixture
def fast_retry() -> RetryPolicy:
    """Real backoff shape, tiny delays: tests never sleep for long."""
    return RetryPolicy(
        max_attempts=5, deadline=30.0, initial_delay=0.001, max_delay=0.01, max_retry_after=0.01
    )


@pytest.fixture(autouse=True)
def _no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own credentials in the environment never reach a test."""
    for name in ("TOGAI_API_TOKEN", "TOGAI_BASE_URL", "LAGO_API_KEY", "LAGO_API_URL"):
        monkeypatch.delenv(name, raising=False)
