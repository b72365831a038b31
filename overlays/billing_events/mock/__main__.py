"""`python -m billing_events.mock`: `billing-events mock`, configured by the environment (see `server`)."""

from __future__ import annotations

import os
import sys

from billing_events.cli._exit import EXIT_USAGE
from billing_events.mock.app import create_app
from billing_events.mock.config import FaultConfigError
from billing_events.mock.server import HOST, config_from_env, listen, serve

__all__ = ["config_from_env", "main"]


def main() -> int:
    # Worded and exited like `billing-events mock`: a bad setting is a usage error.
    host = os.environ.get("MOCK_HOST") or HOST
    try:
        config, port = config_from_env(os.environ)
        app = create_app(config)
    except (FaultConfigError, ValueError, OSError) as exc:
        return _usage(str(exc))
    try:
        sock = listen(host, port)
    except OSError as exc:
        return _usage(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    with sock:
        serve(app, sock)
    return 0


def _usage(message: str) -> int:
    print(f"billing_events.mock: error: {message}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
