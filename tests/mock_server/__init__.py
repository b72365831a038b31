"""A stateful stand-in for Togai and Lago, validating every request against specs/*.yaml.

`create_app()` builds the ASGI app; `mock_server.testing` mounts it in tests; `python -m mock_server` serves it.
"""

from mock_server.app import create_app
from mock_server.config import FaultConfig, MockConfig
from mock_server.state import MockState

__all__ = ["FaultConfig", "MockConfig", "MockState", "create_app"]
