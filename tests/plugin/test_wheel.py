"""A wheel built from the tracked files installs into an empty venv, with and without each extra."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXTRA_HINT = 'pip install "billing-events[mock]"'
STEP_TIMEOUT = 180

# Run in the venv with the mock extra: the shipped specs and catalogue are found, and an event is stored.
USE_THE_MOCK = """
from billing_events.mock import ProviderMock
with ProviderMock.create_in_process("lago") as lago:
    event = {"transaction_id": "t1", "external_subscription_id": "s1", "code": "calls", "timestamp": 1714558530}
    assert lago.client.send([event]).ok
    lago.assert_stored([event])
import importlib.util
assert importlib.util.find_spec("yaml") is None, "the test needs a venv without PyYAML"
print("mock ok")
"""

# A user's tests, run by pytest in the venv: the plugin is loaded, and its fixtures exist only with the extra.
USER_TESTS = """
def test_the_plugin_is_loaded(pytestconfig):
    assert pytestconfig.pluginmanager.has_plugin("billing_events")
"""
USER_TESTS_WITH_THE_EXTRA = """
def test_the_fixture(togai_mock_server):
    event = {"schemaName": "s", "id": "e1", "timestamp": "2024-05-01T10:15:30Z", "accountId": "a",
             "attributes": [{"name": "calls", "value": "1"}], "dimensions": {}}
    assert togai_mock_server.client.send([event]).ok
    assert togai_mock_server.stored_keys() == {"e1"}
"""

# Run in the venv without the extra: the package and the plugin import, the mock names the extra.
WITHOUT_THE_EXTRA = """
import billing_events, billing_events.cli, billing_events.pytest_plugin as plugin
assert not hasattr(plugin, "togai_mock")
try:
    import billing_events.mock
except ImportError as exc:
    print(exc)
else:
    raise SystemExit("billing_events.mock imported without starlette and uvicorn")
"""


# Without the otel and redis extras: the library sends, and each feature that needs one names it.
OTHER_EXTRAS_MISSING = """
from billing_events import Togai, metrics, ConfigurationError
try:
    metrics.use_meter_provider(None)
except ImportError as exc:
    print(exc)
try:
    Togai("t", rate_budget="redis://127.0.0.1:1/0?key=k")
except ConfigurationError as exc:
    print(exc)
"""
# With them: the OpenTelemetry API is used, and a Redis budget is built (it connects on first use).
OTHER_EXTRAS_PRESENT = """
from billing_events import Togai, metrics
metrics.use_meter_provider(None)
Togai("t", rate_budget="redis://127.0.0.1:1/0?key=k").close()
print("extras ok")
"""


def run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(arg) for arg in argv], cwd=cwd, capture_output=True, text=True, timeout=STEP_TIMEOUT, check=False
    )
    return result


def checked(*argv: str | Path, cwd: Path | None = None) -> str:
    result = run(*argv, cwd=cwd)
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.fail("the wheel test builds from the git checkout's tracked files and needs git")
    clone = tmp_path_factory.mktemp("clone")
    # The working tree's tracked files: what a fresh clone of this commit (plus local edits) would hold.
    for name in checked("git", "ls-files", "-z", cwd=ROOT).split("\0"):
        if name and (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    dist = tmp_path_factory.mktemp("dist")
    checked(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", dist, clone)
    (built,) = dist.glob("billing_events-*.whl")
    return built


def test_the_wheel_ships_the_mock_and_its_specs(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())

    assert {
        "billing_events/mock/specs/togai.json",
        "billing_events/mock/specs/lago.json",
        "billing_events/mock/catalogue.json",
        "billing_events/pytest_plugin.py",
    } <= names
    assert not any(name.startswith(("tests/", "mock_server/")) for name in names)


@pytest.mark.slow
def test_an_empty_venv_with_and_without_the_extras(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    checked(sys.executable, "-m", "venv", venv)
    python, command = venv / "bin" / "python", venv / "bin" / "billing-events"
    checked(python, "-m", "pip", "install", "--quiet", wheel, "pytest")
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_plugin.py").write_text(USER_TESTS)

    assert checked(python, "-c", WITHOUT_THE_EXTRA).strip().endswith(EXTRA_HINT)
    assert "1 passed" in checked(python, "-m", "pytest", "-p", "no:cacheprovider", cwd=project)
    assert "togai_mock" not in checked(
        python, "-m", "pytest", "--fixtures", "-p", "no:cacheprovider", cwd=project
    )
    assert checked(command, "--version").startswith("billing-events ")
    refused = run(command, "mock")
    assert refused.returncode == 64
    assert EXTRA_HINT in refused.stderr
    missing = checked(python, "-c", OTHER_EXTRAS_MISSING)
    assert 'pip install "billing-events[otel]"' in missing
    assert "pip install 'billing-events[redis]'" in missing

    checked(python, "-m", "pip", "install", "--quiet", f"{wheel}[mock,otel,redis]")

    assert checked(python, "-c", OTHER_EXTRAS_PRESENT).strip() == "extras ok"

    assert checked(python, "-c", USE_THE_MOCK).strip() == "mock ok"
    (project / "test_fixture.py").write_text(USER_TESTS_WITH_THE_EXTRA)
    assert "2 passed" in checked(python, "-m", "pytest", "-p", "no:cacheprovider", cwd=project)
    assert "--lago-store" in checked(command, "mock", "--help")
