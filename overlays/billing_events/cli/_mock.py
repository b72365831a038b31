"""``billing-events mock``: serve the stateful Togai and Lago mock until SIGTERM or Ctrl-C.

Each option falls back on the variable ``make mock`` has always read (MOCK_PORT, MOCK_FAULTS, ...), so the
environment and the command line configure the same server.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console

from ..text import shown
from ._exit import UsageError

DEFAULT_HOST = "127.0.0.1"
# The mock's own list (billing_events.mock.config.LAGO_STORES) needs the extra; the parser must not.
LAGO_STORES = ("postgres", "clickhouse")
EXTRA_HINT = 'pip install "billing-events[mock]"'

DESCRIPTION = """\
Serve a stateful mock of both APIs on one port: Togai under /togai, Lago under /lago/api/v1,
and /_mock/* to inspect and steer it (events, stats, reset, faults, Lago store). Every request
body is checked against the specs. Prints both base URLs and the token, then serves until
SIGTERM or Ctrl-C (exit 0). Needs the mock extra: pip install "billing-events[mock]".
"""


def _port(text: str) -> int:
    # The rule of the mock's MOCK_PORT (server.port_from), which this parser may not import. Its length first:
    # int() refuses a number past 4,300 digits, and argparse would then quote the whole value.
    significant = text.lstrip("0") or "0"
    if not (text.isascii() and text.isdigit()) or len(significant) > 5 or int(significant) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {shown(text)}")
    return int(significant)


def _max_events(text: str) -> str:
    if text.lower() != "none" and not (text.isascii() and text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError(f"expected a positive number of events or none, got {text[:40]!r}")
    return text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        metavar="HOST",
        help=f"address to listen on (default: $MOCK_HOST, else {DEFAULT_HOST})",
    )
    parser.add_argument(
        "--port",
        type=_port,
        metavar="PORT",
        help="port to listen on; 0 picks a free one (default: $MOCK_PORT, else 8910)",
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help="the bearer token both APIs accept (default: $MOCK_TOKEN, else test-token)",
    )
    parser.add_argument(
        "--restricted-token",
        metavar="TOKEN",
        help="a Lago key that may read but not write events (default: $MOCK_RESTRICTED_TOKEN)",
    )
    parser.add_argument(
        "--faults",
        metavar="JSON",
        help='faults to inject, e.g. \'{"rate_429": 0.1, "seed": 7}\' (default: $MOCK_FAULTS, else none)',
    )
    parser.add_argument(
        "--catalogue",
        metavar="PATH",
        type=Path,
        help="subscriptions and metrics that estimate_fees prices against (default: $MOCK_CATALOGUE,"
        " else the catalogue shipped with the mock)",
    )
    parser.add_argument(
        "--lago-store",
        choices=LAGO_STORES,
        help="which Lago event store to behave like: postgres refuses a repeated key when written,"
        " clickhouse drops duplicates when read (default: $MOCK_LAGO_STORE, else postgres)",
    )
    parser.add_argument(
        "--rate-limits",
        metavar="on|off|JSON",
        help="enforce the providers' rate limits: `on` for the published ones, or a JSON object such as"
        ' {"limits": {"togai.ingest_batch": 40}} (default: $MOCK_RATE_LIMITS, else off)',
    )
    parser.add_argument(
        "--max-events",
        type=_max_events,
        metavar="N|none",
        help="events each provider's store keeps; a request that would store more is answered 503"
        " (default: $MOCK_MAX_EVENTS, else 1000000)",
    )


# Option name -> the variable it overrides in `config_from_env`.
_OPTION_ENV = {
    "port": "MOCK_PORT",
    "token": "MOCK_TOKEN",
    "restricted_token": "MOCK_RESTRICTED_TOKEN",
    "faults": "MOCK_FAULTS",
    "catalogue": "MOCK_CATALOGUE",
    "lago_store": "MOCK_LAGO_STORE",
    "rate_limits": "MOCK_RATE_LIMITS",
    "max_events": "MOCK_MAX_EVENTS",
}


def mock(args: argparse.Namespace, err: Console) -> int:
    """Serve until stopped; returns 0 after SIGTERM or Ctrl-C."""
    try:
        from ..mock.app import create_app
        from ..mock.config import FaultConfigError
        from ..mock.server import config_from_env, listen, serve
    except ModuleNotFoundError as exc:
        if not str(exc).startswith("billing_events.mock needs"):
            raise
        raise UsageError(str(exc)) from None
    env = dict(os.environ)
    env.update(
        {
            var: str(getattr(args, name))
            for name, var in _OPTION_ENV.items()
            if getattr(args, name) is not None
        }
    )
    host = args.host or os.environ.get("MOCK_HOST") or DEFAULT_HOST
    try:
        config, port = config_from_env(env)
        app = create_app(config)
    except (FaultConfigError, ValueError, OSError) as exc:
        raise UsageError(str(exc)) from None
    try:
        sock = listen(host, port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    with sock:
        serve(app, sock)
    return 0
