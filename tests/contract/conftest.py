"""Shared pieces of the contract suite: the real-server warning, the case counts, and mock fixtures."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import httpx
import pytest
from starlette.applications import Starlette

from billing_events.mock import MockConfig, MockState, create_app
from billing_events.mock.testing import sync_transport

from .contract_targets import CASES_RUN, PROVIDERS, case_table
from .mock_support import AUTH, TOKEN


def remote_warning() -> str | None:
    remote = [
        f"{setup.name} at {os.environ[setup.url_variable]}"
        for setup in PROVIDERS
        if os.environ.get(setup.url_variable)
    ]
    if not remote:
        return None
    return f"WARNING: the contract suite sends real requests and CREATES EVENTS on {', '.join(remote)}"


def pytest_report_header(config: pytest.Config) -> list[str]:
    warning = remote_warning()
    return [warning] if warning else []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not CASES_RUN:
        return
    terminalreporter.section("schemathesis cases per operation")
    for row in case_table():
        terminalreporter.write_line(row)
    warning = remote_warning()
    if warning:
        terminalreporter.write_line(warning, yellow=True, bold=True)


@pytest.fixture
def mock_app() -> Starlette:
    """A fresh mock per test, so stored events and counters never leak between tests."""
    return create_app(MockConfig(token=TOKEN))


@pytest.fixture
def mock_state(mock_app: Starlette) -> MockState:
    state: MockState = mock_app.state.mock
    return state


@pytest.fixture
def client_for() -> Iterator[Callable[[Starlette], httpx.Client]]:
    """Builds authenticated in-process clients for any mock app; closes them after the test."""
    clients: list[httpx.Client] = []

    def build(app: Starlette) -> httpx.Client:
        client = httpx.Client(transport=sync_transport(app), base_url="http://mock", headers=AUTH)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def client(mock_app: Starlette, client_for: Callable[[Starlette], httpx.Client]) -> httpx.Client:
    return client_for(mock_app)
