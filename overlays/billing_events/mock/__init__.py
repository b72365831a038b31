"""A stateful stand-in for Togai and Lago, validating every request against specs/*.yaml.

`create_app()` builds the ASGI app; `billing_events.mock.testing` mounts it in tests; `python -m billing_events.mock` serves it.
"""

from billing_events.mock.app import create_app
from billing_events.mock.config import FaultConfig, MockConfig
from billing_events.mock.state import MockState

__all__ = ["FaultConfig", "MockConfig", "MockState", "create_app"]
