"""Regenerate the typed clients from the specs with openapi-python-client.

Usage: ``python specs/regenerate.py [OUTPUT_ROOT]`` (default: ``generated/``).
Writes ``<OUTPUT_ROOT>/togai_api`` and ``<OUTPUT_ROOT>/lago_api`` with
openapi-python-client, and ``<SCHEMA_ROOT>/<provider>.schema.json``: the spec's
component schemas as one JSON Schema document, which the overlay validates plain
dict events against (default ``overlays/billing_events/schemas``), and
``<MOCK_SPEC_ROOT>/<provider>.json``: the spec itself as JSON, which the mock
shipped in the wheel loads (default ``overlays/billing_events/mock/specs``). The
drift test runs this into a temporary directory and compares with the committed tree.

The specs describe what the servers accept. A schema may carry
``x-overlay-strict``: a list of ``{reason, set}`` rules whose keywords replace
the schema's own in the overlay's bundle only, where the server would silently
drop or misbill data. The bundle keeps each reason as a ``$comment``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

SPECS = Path(__file__).resolve().parent
PROVIDERS = ("togai", "lago")
ROOT = SPECS.parent
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def _rewrite_refs(node: object) -> object:
    if isinstance(node, dict):
        return {
            key: (
                value.replace("#/components/schemas/", "#/$defs/") if key == "$ref" else _rewrite_refs(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(item) for item in node]
    return node


STRICT = "x-overlay-strict"


def apply_strict_rules(node: object) -> object:
    """A copy of a schema tree in which every ``x-overlay-strict`` rule has replaced the keywords it names."""
    if isinstance(node, list):
        return [apply_strict_rules(item) for item in node]
    if not isinstance(node, dict):
        return node
    result = {key: apply_strict_rules(value) for key, value in node.items() if key != STRICT}
    rules = node.get(STRICT, [])
    for rule in rules:
        result.update(apply_strict_rules(rule["set"]))  # type: ignore[arg-type]
    if rules:
        result["$comment"] = " ".join(f"Overlay rule: {rule['reason']}" for rule in rules)
    return result


def strict_rules(spec: dict[str, object]) -> list[tuple[str, str, list[str]]]:
    """(schema path, reason, keywords) for every ``x-overlay-strict`` rule of a spec: the README's table."""
    found: list[tuple[str, str, list[str]]] = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for rule in node.get(STRICT, []):
                found.append((path, rule["reason"], sorted(rule["set"])))
            for key, value in node.items():
                if key != STRICT:
                    walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{path}/{index}")

    walk(spec.get("components", {}), "#/components")
    return found


def write_schema_bundle(provider: str, schema_root: Path) -> None:
    import yaml

    spec = yaml.safe_load((SPECS / f"{provider}.yaml").read_text(encoding="utf-8"))
    bundle = {
        "$schema": SCHEMA_DIALECT,
        "$comment": f"Derived from specs/{provider}.yaml by specs/regenerate.py; do not edit.",
        "$defs": _rewrite_refs(apply_strict_rules(spec["components"]["schemas"])),
    }
    schema_root.mkdir(parents=True, exist_ok=True)
    text = json.dumps(bundle, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    (schema_root / f"{provider}.schema.json").write_text(text, encoding="utf-8")


def write_mock_spec(provider: str, mock_spec_root: Path) -> None:
    """The spec as the server sees it, in JSON: the installed mock needs neither specs/ nor a YAML parser."""
    import yaml

    spec = yaml.safe_load((SPECS / f"{provider}.yaml").read_text(encoding="utf-8"))
    mock_spec_root.mkdir(parents=True, exist_ok=True)
    text = json.dumps(spec, indent=1, ensure_ascii=False) + "\n"
    (mock_spec_root / f"{provider}.json").write_text(text, encoding="utf-8")


def regenerate(output_root: Path, schema_root: Path, mock_spec_root: Path) -> None:
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    output_root.mkdir(parents=True, exist_ok=True)
    for provider in PROVIDERS:
        target = output_root / f"{provider}_api"
        if target.exists():
            shutil.rmtree(target)
        result = subprocess.run(
            [
                str(bin_dir / "openapi-python-client"),
                "generate",
                "--path",
                str(SPECS / f"{provider}.yaml"),
                "--config",
                str(SPECS / f"{provider}-generator.yaml"),
                "--meta",
                "none",
                "--output-path",
                str(target),
                "--fail-on-warning",
            ],
            cwd=output_root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 or not target.is_dir():
            sys.stderr.write(result.stdout + result.stderr)
            raise SystemExit(f"openapi-python-client failed for specs/{provider}.yaml")
        # PEP 561: users' type checkers should read the generated annotations.
        (target / "py.typed").write_text("", encoding="utf-8")
        write_schema_bundle(provider, schema_root)
        write_mock_spec(provider, mock_spec_root)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        out = Path(sys.argv[1])
        regenerate(out, out / "schemas", out / "mock_specs")
    else:
        overlay = ROOT / "overlays" / "billing_events"
        regenerate(ROOT / "generated", overlay / "schemas", overlay / "mock" / "specs")
