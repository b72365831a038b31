"""`python -m billing_events.mock`: serve the mock on 127.0.0.1:${MOCK_PORT:-8910}.

Environment: MOCK_PORT, MOCK_TOKEN (default `test-token`), MOCK_FAULTS (JSON fault configuration),
MOCK_CATALOGUE (path of a catalogue file for estimate_fees), MOCK_LAGO_STORE (`postgres`, the default, or
`clickhouse`), MOCK_RESTRICTED_TOKEN (a Lago key that may not write events).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import uvicorn

from billing_events.mock.app import create_app
from billing_events.mock.config import (
    DEFAULT_CATALOGUE,
    DEFAULT_TOKEN,
    LAGO_PREFIX,
    LAGO_STORES,
    TOGAI_PREFIX,
    FaultConfig,
    FaultConfigError,
    MockConfig,
)
from billing_events.mock.faults import silence_injected_drops

HOST = "127.0.0.1"
DEFAULT_PORT = 8910


def config_from_env(env: Mapping[str, str]) -> tuple[MockConfig, int]:
    port_text = env.get("MOCK_PORT") or str(DEFAULT_PORT)
    if not port_text.isdigit():
        raise ValueError(f"MOCK_PORT must be a port number, got {port_text!r}")
    port = int(port_text)
    faults_json = env.get("MOCK_FAULTS")
    faults = FaultConfig.from_json(faults_json) if faults_json else FaultConfig()
    catalogue = Path(env.get("MOCK_CATALOGUE") or DEFAULT_CATALOGUE)
    lago_store = env.get("MOCK_LAGO_STORE") or "postgres"
    if lago_store not in LAGO_STORES:
        raise ValueError(f"MOCK_LAGO_STORE must be one of {', '.join(LAGO_STORES)}, got {lago_store!r}")
    return MockConfig(
        token=env.get("MOCK_TOKEN") or DEFAULT_TOKEN,
        faults=faults,
        catalogue_path=catalogue,
        lago_store=lago_store,
        restricted_token=env.get("MOCK_RESTRICTED_TOKEN") or None,
    ), port


def main() -> int:
    try:
        config, port = config_from_env(os.environ)
        app = create_app(config)
    except (FaultConfigError, ValueError, OSError) as exc:
        print(f"mock_server: {exc}", file=sys.stderr)
        return 2
    server_config = uvicorn.Config(app, host=HOST, port=port, log_level="info", access_log=False)
    # After uvicorn.Config, which configures logging: the filter must sit on the configured logger.
    silence_injected_drops()
    origin = f"http://{HOST}:{port}"
    print(f"Togai base URL: {origin}{TOGAI_PREFIX}", flush=True)
    print(f"Lago base URL:  {origin}{LAGO_PREFIX}", flush=True)
    print(f"Bearer token:   {config.token}", flush=True)
    print(f"Faults:         {config.faults.to_dict()}", flush=True)
    print(f"Lago store:     {config.lago_store}", flush=True)
    uvicorn.Server(server_config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
