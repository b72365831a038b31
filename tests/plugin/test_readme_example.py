"""The README's complete example of the fixtures runs, as is, in a user's test project."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("## Testing your code with the mock", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the section has no python example"
    return match.group(1)


def test_the_readme_example_passes(pytester: pytest.Pytester) -> None:
    example = readme_example()
    pytester.makepyfile(test_billing=example)

    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")

    result.assert_outcomes(passed=example.count("\ndef test_") + 1)  # one test runs on both stores
