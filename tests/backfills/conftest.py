"""One mock over real HTTP for the backfill tests (workers are other processes), reset per test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from backfills.support import TESTS_DIR, TOKEN, Mock
from billing_events.mock import MockConfig, create_app
from billing_events.mock.testing import serve_in_thread


@pytest.fixture(scope="session")
def mock_origin() -> Iterator[str]:
    with serve_in_thread(create_app(MockConfig(token=TOKEN))) as origin:
        yield origin


@pytest.fixture
def mock(mock_origin: str) -> Iterator[Mock]:
    admin = Mock(mock_origin)
    admin.reset()
    yield admin
    admin.close()


@pytest.fixture(scope="session", autouse=True)
def _workers_import_the_tests() -> None:
    """Engine workers unpickle the faults by module name: put ``tests`` on their path."""
    path = os.environ.get("PYTHONPATH", "")
    if TESTS_DIR not in path.split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [TESTS_DIR, path]))
