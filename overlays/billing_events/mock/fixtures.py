"""The pytest fixtures of the mock; `billing_events.pytest_plugin` exposes them when the extra is installed.

`togai_mock` and `lago_mock` run in-process (httpx transports, no socket); `togai_mock_server` and
`lago_mock_server` serve over HTTP on a free loopback port. Each is a fresh `ProviderMock` per test. The
Lago fixtures take the store mode as an indirect parameter:

    @pytest.mark.parametrize("lago_mock", ["postgres", "clickhouse"], indirect=True)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from billing_events.mock.handle import ProviderMock, provider_mock


def _store(request: pytest.FixtureRequest) -> str:
    store: str = getattr(request, "param", "postgres")
    return store


@pytest.fixture
def togai_mock() -> Iterator[ProviderMock]:
    """A fresh in-process Togai mock: base URL, token, clients, stored events, faults."""
    yield from provider_mock("togai", served=False)


@pytest.fixture
def lago_mock(request: pytest.FixtureRequest) -> Iterator[ProviderMock]:
    """A fresh in-process Lago mock (postgres store unless parametrized with "clickhouse")."""
    yield from provider_mock("lago", served=False, lago_store=_store(request))


@pytest.fixture
def togai_mock_server() -> Iterator[ProviderMock]:
    """A fresh Togai mock served over HTTP on 127.0.0.1 and a free port."""
    yield from provider_mock("togai", served=True)


@pytest.fixture
def lago_mock_server(request: pytest.FixtureRequest) -> Iterator[ProviderMock]:
    """A fresh Lago mock served over HTTP (postgres store unless parametrized with "clickhouse")."""
    yield from provider_mock("lago", served=True, lago_store=_store(request))
