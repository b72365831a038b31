"""Regenerate the typed clients from the specs with openapi-python-client.

Usage: ``python specs/regenerate.py [OUTPUT_ROOT]`` (default: ``generated/``).
Writes ``<OUTPUT_ROOT>/togai_api`` and ``<OUTPUT_ROOT>/lago_api``. The drift
test runs this into a temporary directory and compares with the committed tree.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SPECS = Path(__file__).resolve().parent
PROVIDERS = ("togai", "lago")


def regenerate(output_root: Path) -> None:
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


if __name__ == "__main__":
    regenerate(Path(sys.argv[1]) if len(sys.argv) > 1 else SPECS.parent / "generated")
