"""Where the contract suite sends its requests: URLs from the environment, or the mock in-process.

`TOGAI_BASE_URL` + `TOGAI_API_TOKEN` and `LAGO_API_URL` + `LAGO_API_KEY` point a provider's run at a real
server (which then receives the generated events); a provider without a URL is tested against the mock.
"""

from __future__ import annotations

import tomllib
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import schemathesis
import yaml
from attrs import frozen
from schemathesis.specs.openapi.schemas import OpenApiSchema
from starlette.applications import Starlette

from billing_events.mock import MockConfig, create_app

ROOT = Path(__file__).resolve().parents[2]
CONFIG_FILE = Path(__file__).with_name("schemathesis.toml")
MOCK_TOKEN = "contract-token"
# Schemathesis reaches an in-process app under this host, whatever the base URL says.
IN_PROCESS_ORIGIN = "http://testserver"

PHASES = ("examples", "coverage", "fuzzing", "stateful")
# Cases run per (operation, phase), printed at the end of the session by conftest.py.
CASES_RUN: Counter[tuple[str, str]] = Counter()


def record_case(provider: str, case: schemathesis.Case[Any]) -> None:
    phase = case.meta.phase.name.value if case.meta is not None else "stateful"
    CASES_RUN[(f"{provider} {case.operation.label}", phase)] += 1


def case_table() -> list[str]:
    """The counts as text rows: one per operation, one column per phase."""
    operations = sorted({operation for operation, _phase in CASES_RUN})
    rows = [f"{'operation':<48}" + "".join(f"{phase:>10}" for phase in PHASES) + f"{'total':>10}"]
    for operation in operations:
        counts = [CASES_RUN[(operation, phase)] for phase in PHASES]
        rows.append(f"{operation:<48}" + "".join(f"{count:>10}" for count in counts) + f"{sum(counts):>10}")
    rows.append(f"{'all operations':<48}" + " " * 10 * len(PHASES) + f"{sum(CASES_RUN.values()):>10}")
    return rows


@frozen
class ProviderSetup:
    name: str
    spec_path: Path
    url_variable: str
    token_variable: str
    mock_prefix: str


PROVIDERS = (
    ProviderSetup("togai", ROOT / "specs" / "togai.yaml", "TOGAI_BASE_URL", "TOGAI_API_TOKEN", "/togai"),
    ProviderSetup("lago", ROOT / "specs" / "lago.yaml", "LAGO_API_URL", "LAGO_API_KEY", "/lago/api/v1"),
)


@frozen
class ContractTarget:
    provider: str
    spec_path: Path
    base_url: str
    token: str
    # The in-process mock; None when the run goes to a server over the network.
    app: Starlette | None

    @property
    def is_remote(self) -> bool:
        return self.app is None

    @property
    def title(self) -> str:
        with self.spec_path.open(encoding="utf-8") as handle:
            title = yaml.safe_load(handle)["info"]["title"]
        assert isinstance(title, str)
        return title


def resolve_targets(env: Mapping[str, str], mock: Starlette | None = None) -> dict[str, ContractTarget]:
    """One target per provider; both in-process targets share one mock app."""
    targets: dict[str, ContractTarget] = {}
    for setup in PROVIDERS:
        url = env.get(setup.url_variable, "").rstrip("/")
        if url:
            token = env.get(setup.token_variable, "")
            if not token:
                raise RuntimeError(f"{setup.url_variable} is set but {setup.token_variable} is not")
            targets[setup.name] = ContractTarget(setup.name, setup.spec_path, url, token, None)
            continue
        if mock is None:
            mock = create_app(MockConfig(token=MOCK_TOKEN))
        targets[setup.name] = ContractTarget(
            setup.name, setup.spec_path, f"{IN_PROCESS_ORIGIN}{setup.mock_prefix}", MOCK_TOKEN, mock
        )
    return targets


def schemathesis_config(targets: Mapping[str, ContractTarget]) -> schemathesis.Config:
    """schemathesis.toml plus one [[project]] per spec carrying its base URL and bearer token."""
    data: dict[str, Any] = tomllib.loads(CONFIG_FILE.read_text(encoding="utf-8"))
    data["project"] = [
        {
            "title": target.title,
            "base-url": target.base_url,
            "auth": {"openapi": {"bearerAuth": {"bearer": target.token}}},
        }
        for target in targets.values()
    ]
    return schemathesis.Config.from_dict(data, base_dir=str(CONFIG_FILE.parent))


def load_schema(target: ContractTarget, config: schemathesis.Config) -> OpenApiSchema:
    schema = schemathesis.openapi.from_path(target.spec_path, config=config)
    if target.app is not None:
        schema.app = target.app
    return schema
