"""Fixtures of the CLI tests: one mock server per session, reset before each test, and a runner."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from billing_events.cli import main
from billing_events.mock import MockConfig, create_app
from billing_events.mock.testing import serve_in_thread
from cli.support import CliResult, RunCli

TOKEN = "cli-test-token"


class Mock:
    """The admin side of the mock server, and its provider base URLs."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.togai_url = f"{origin}/togai"
        self.lago_url = f"{origin}/lago/api/v1"
        self._admin = httpx.Client(base_url=origin, timeout=10)

    def url(self, provider: str) -> str:
        return self.togai_url if provider == "togai" else self.lago_url

    def reset(self) -> None:
        self._admin.post("/_mock/reset").raise_for_status()

    def faults(self, **settings: Any) -> None:
        self._admin.put("/_mock/faults", json=settings).raise_for_status()

    def lago_store(self, kind: str) -> None:
        """Behave like Lago's ``postgres`` or ``clickhouse`` event store until the next reset."""
        self._admin.put("/_mock/lago_store", json={"store": kind}).raise_for_status()

    def stats(self, provider: str) -> dict[str, int]:
        stats: dict[str, int] = self._admin.get("/_mock/stats").json()[provider]
        return stats

    def events(self, provider: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self._admin.get(f"/_mock/events/{provider}").json()
        return events

    def keys(self, provider: str) -> list[str]:
        field = "id" if provider == "togai" else "transaction_id"
        return [event[field] for event in self.events(provider)]

    def close(self) -> None:
        self._admin.close()


@pytest.fixture(scope="session")
def mock_origin() -> Iterator[str]:
    with serve_in_thread(create_app(MockConfig(token=TOKEN))) as origin:
        yield origin


@pytest.fixture
def mock(mock_origin: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Mock]:
    admin = Mock(mock_origin)
    admin.reset()
    monkeypatch.setenv("TOGAI_API_TOKEN", TOKEN)
    monkeypatch.setenv("LAGO_API_KEY", TOKEN)
    monkeypatch.setenv("TOGAI_BASE_URL", admin.togai_url)
    monkeypatch.setenv("LAGO_API_URL", admin.lago_url)
    monkeypatch.chdir(tmp_path)
    yield admin
    admin.close()


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> RunCli:
    def run(*argv: str) -> CliResult:
        code = main(list(argv))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
