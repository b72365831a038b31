"""One mock over real HTTP for the backfill tests (workers are other processes), reset per test."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from backfills.support import TESTS_DIR, TOKEN, Mock
from billing_events.mock import MockConfig, create_app
from billing_events.mock.testing import serve_in_thread

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


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


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    """One Spark session per test module that asks for it (start-up is slow)."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2,2]")  # 2 cores; a failed task is tried once more
        .appName("billing-events-backfill-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.memory", "512m")
        .config("spark.executorEnv.PYTHONPATH", os.environ.get("PYTHONPATH", ""))
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
