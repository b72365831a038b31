"""The committed generated/ tree is exactly what `make regenerate` produces from specs/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .openapi_documents import GENERATED_DIR, SPECS_DIR

PACKAGES = ("togai_api", "lago_api")
# Byte-code and the post-hook's ruff cache are by-products, ignored by git as well.
IGNORED_DIRECTORIES = frozenset({"__pycache__", ".ruff_cache"})


def _files(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not IGNORED_DIRECTORIES.intersection(path.relative_to(root).parts)
    }


def tree_differences(fresh: Path, committed: Path) -> list[str]:
    """Human-readable differences between a fresh generation and the committed tree."""
    fresh_files, committed_files = _files(fresh), _files(committed)
    problems = [
        f"not generated any more: {name}" for name in sorted(committed_files.keys() - fresh_files.keys())
    ]
    problems += [
        f"missing from the commit: {name}" for name in sorted(fresh_files.keys() - committed_files.keys())
    ]
    problems += [
        f"content differs: {name}"
        for name in sorted(fresh_files.keys() & committed_files.keys())
        if fresh_files[name] != committed_files[name]
    ]
    return problems


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("regenerated")
    result = subprocess.run(
        [sys.executable, str(SPECS_DIR / "regenerate.py"), str(output)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, f"specs/regenerate.py failed:\n{result.stdout}\n{result.stderr}"
    return output


@pytest.mark.parametrize("package", PACKAGES)
def test_generated_package_matches_specs(regenerated: Path, package: str) -> None:
    assert (regenerated / package / "__init__.py").is_file()
    problems = tree_differences(regenerated / package, GENERATED_DIR / package)
    assert not problems, (
        f"generated/{package} is out of date with specs/. Run `make regenerate` and commit the result.\n"
        + "\n".join(problems)
    )


def test_schema_bundles_match_specs(regenerated: Path) -> None:
    committed = SPECS_DIR.parent / "overlays" / "billing_events" / "schemas"
    problems = tree_differences(regenerated / "schemas", committed)
    assert not problems, (
        "overlays/billing_events/schemas is out of date with specs/. Run `make regenerate` and commit.\n"
        + "\n".join(problems)
    )


def test_mock_specs_match_specs(regenerated: Path) -> None:
    committed = SPECS_DIR.parent / "overlays" / "billing_events" / "mock" / "specs"
    problems = tree_differences(regenerated / "mock_specs", committed)
    assert not problems, (
        "overlays/billing_events/mock/specs is out of date with specs/. Run `make regenerate` and commit.\n"
        + "\n".join(problems)
    )


def test_tree_differences_reports_every_kind_of_drift(tmp_path: Path) -> None:
    fresh, committed = tmp_path / "fresh", tmp_path / "committed"
    for root in (fresh, committed):
        (root / "models" / "__pycache__").mkdir(parents=True)
        (root / "same.py").write_text("x = 1\n")
        (root / "models" / "__pycache__" / "junk.pyc").write_bytes(bytes([len(root.name)]))
    (fresh / "changed.py").write_text("x = 1\n")
    (committed / "changed.py").write_text("x = 2\n")
    (fresh / "models" / "new.py").write_text("")
    (committed / "old.py").write_text("")
    assert tree_differences(fresh, committed) == [
        "not generated any more: old.py",
        "missing from the commit: models/new.py",
        "content differs: changed.py",
    ]
