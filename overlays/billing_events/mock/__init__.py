"""A stateful stand-in for Togai and Lago, validating every request against the specs.

`create_app()` builds the ASGI app; `billing_events.mock.testing` mounts it in tests; `python -m billing_events.mock` serves it.
"""

import importlib.util

# Checked before anything imports them, so a missing extra is named instead of a missing module.
_MISSING = [name for name in ("starlette", "uvicorn") if importlib.util.find_spec(name) is None]
if _MISSING:
    raise ModuleNotFoundError(
        f"billing_events.mock needs the 'mock' extra ({', '.join(_MISSING)} not installed):"
        ' pip install "billing-events[mock]"',
        name=_MISSING[0],
    )

from billing_events.mock.app import create_app  # noqa: E402
from billing_events.mock.config import FaultConfig, MockConfig  # noqa: E402
from billing_events.mock.handle import ProviderMock  # noqa: E402
from billing_events.mock.state import MockState  # noqa: E402

__all__ = ["FaultConfig", "MockConfig", "MockState", "ProviderMock", "create_app"]
