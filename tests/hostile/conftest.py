"""The hostile server, started for each test that asks for it and stopped after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hostile.server import HostileServer

TOKEN = "hostile-canary-token-5c1e9a7b3d"


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    server = HostileServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
