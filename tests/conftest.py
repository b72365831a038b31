"""Fixtures every test directory shares."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hostile.server import HostileServer
from hypothesis import settings

from billing_events import RetryPolicy

# CI (``.ci/run`` sets CI) draws the same examples on every run: a submission's CI must not pass or fail on
# the draw. A developer's runs draw new ones, and a failure prints the seed that replays it.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


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


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    """The hostile server (``hostile.server``), started for the test and stopped after."""
    server = HostileServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
