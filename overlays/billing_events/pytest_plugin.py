"""pytest fixtures for testing code that sends billing events: a Togai and a Lago mock, in-process or served.

Registered through the `pytest11` entry point, so installing `billing-events[mock]` is enough: the fixtures
`togai_mock`, `lago_mock`, `togai_mock_server` and `lago_mock_server` appear in every test session (see
`billing_events.mock.fixtures`). Without the extra this module defines nothing and pytest sees no change.
"""

from __future__ import annotations

import importlib.util

if all(importlib.util.find_spec(name) is not None for name in ("starlette", "uvicorn")):
    from billing_events.mock.fixtures import lago_mock, lago_mock_server, togai_mock, togai_mock_server

    __all__ = ["lago_mock", "lago_mock_server", "togai_mock", "togai_mock_server"]
