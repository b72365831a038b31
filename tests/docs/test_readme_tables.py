"""The README's tables name what the code has: metrics, errors, mock fault settings and variables, fixture
members, and every `#anchor` link leads to a heading."""

from __future__ import annotations

import argparse
import inspect
import re
from pathlib import Path
from typing import Any

import billing_events.errors
from billing_events import metrics
from billing_events.cli._args import build_parser
from billing_events.mock import ProviderMock
from billing_events.mock.config import FaultConfig

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PROSE = re.sub(r"```.*?```", "", README, flags=re.DOTALL)


def section(heading: str) -> str:
    """The prose under a heading (code blocks left out), up to the next heading of its level or higher."""
    level = len(heading) - len(heading.lstrip("#"))
    start = PROSE.index(f"\n{heading}\n")
    end = re.compile(rf"\n#{{1,{level}}} ").search(PROSE, start + len(heading) + 2)
    return PROSE[start : end.start() if end else len(PROSE)]


def table_names(text: str) -> set[str]:
    """The backquoted names in the first cell of each table row."""
    return set(re.findall(r"^\| `([^`]+)`", text, flags=re.MULTILINE))


class _NamingMeter:
    """A meter that only records the names of the instruments made on it."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def __getattr__(self, attribute: str) -> Any:
        def create(name: str, **_: object) -> None:
            self.names.append(name)

        return create


def test_the_metrics_table_names_every_instrument() -> None:
    meter = _NamingMeter()
    metrics._Instruments(meter)
    assert table_names(section("### Metrics")) == set(meter.names)


def test_the_errors_tree_names_every_error_class() -> None:
    classes = {
        name
        for name, value in vars(billing_events.errors).items()
        if inspect.isclass(value)
        and issubclass(value, Exception)
        and value.__module__ == "billing_events.errors"
    }
    tree = README.split("\n### Errors\n", 1)[1].split("```", 2)[1]  # the section's class tree
    assert {name for name in classes if not re.search(rf"\b{name}\b", tree)} == set()


def test_the_fault_table_names_every_fault_setting() -> None:
    assert table_names(section("## Mock server")) >= set(FaultConfig().to_dict())


def test_every_mock_variable_is_documented() -> None:
    sources = [ROOT / "overlays/billing_events/cli/_mock.py", ROOT / "overlays/billing_events/mock/server.py"]
    variables = {name for path in sources for name in re.findall(r"MOCK_[A-Z_]+", path.read_text())}
    assert {name for name in variables if f"`{name}`" not in README} == set()


def test_the_fixture_table_names_every_public_member() -> None:
    internal = {
        "app",
        "origin",
        "served",
        "state",
        "provider",
        "key_field",
        "close",
    }  # or documented elsewhere
    members = {name for name in vars(ProviderMock) if not name.startswith("_")} - internal
    members |= {"base_url"}  # set in __init__
    members -= {"create_in_process", "create_served"}  # the text below the table names them
    table = section("## Testing your code with the mock")
    documented = set(re.findall(r"`(\w+)(?:\([^`]*\))?`", table))
    assert members - documented == set()


def slug(heading: str) -> str:
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_anchor_link_leads_to_a_heading() -> None:
    slugs: set[str] = set()
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#+ (.*)$", PROSE, flags=re.MULTILINE):
        base = slug(heading)
        count = seen.get(base, 0)
        slugs.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    links = set(re.findall(r"\]\(#([^)]+)\)", PROSE))
    assert links - slugs == set()


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every option of a parser and of its subcommands, at any depth."""
    found = {option for action in parser._actions for option in action.option_strings}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found |= _option_strings(child)
    return found


def test_every_command_line_option_the_readme_names_exists() -> None:
    named = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-v)\b", README))
    # Options of other commands the README names: ruff, mypy, openapi-python-client, valgrind, Celery, the bench.
    others = {"--check", "--strict", "--meta", "--fail-on-warning", "--tool", "--max-memory-per-child"}
    others |= {"--scenarios", "--skip-extras", "--profile", "--caller-cost-only", "--no-backfills"}
    others |= {"--skip-pacing", "--recovery-events"}
    assert named - others - _option_strings(build_parser()) == set()
