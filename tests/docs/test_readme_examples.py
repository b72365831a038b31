"""Every Python example of the README runs, against a served mock, with only its URL, token and paths replaced.

Each ```python block of README.md is named here by the heading it sits under (and its place there), and is
either run or skipped with a reason. A block added to the README without a line here fails the test, so an
example cannot be added unchecked; a block that stops running fails the test that names it.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from billing_events.mock import ProviderMock

README = Path(__file__).resolve().parents[2] / "README.md"

# The examples' provider URLs, each replaced by the mock's (the only change to a block besides paths).
TOGAI_URLS = ('"https://api.togai.com"', '"https://sandbox-api.togai.com"')
LAGO_URLS = (
    '"https://api.getlago.com/api/v1"',
    '"https://api.eu.getlago.com/api/v1"',
    '"http://localhost:3000/api/v1"',
)

# Fragments use a client or events made earlier in their section; this is that earlier code.


def togai_events(count: int) -> str:
    """Code that makes ``events``: ``count`` Togai events with keys evt-0, evt-1, ..."""
    return f"""
events = [
    {{
        "schemaName": "api_calls",
        "id": f"evt-{{n}}",
        "timestamp": "2024-05-01T10:15:30Z",
        "accountId": "acme-corp",
        "attributes": [{{"name": "calls", "value": "1"}}],
        "dimensions": {{}},
    }}
    for n in range({count})
]
"""


TOGAI_CLIENT = """
from billing_events import AsyncTogai, Lago, Togai

togai = Togai()
""" + togai_events(3)
# The interrupted send: Ctrl-C arrives during the second of three requests, so the `except` branch runs.
CTRL_C_CLIENT = """
import httpx
from billing_events import Togai


class CtrlC(httpx.HTTPTransport):
    calls = 0

    def handle_request(self, request):
        CtrlC.calls += 1
        if CtrlC.calls == 2:
            raise KeyboardInterrupt
        return super().handle_request(request)


togai = Togai(transport=CtrlC(), max_batch_events=2)
""" + togai_events(6)
CTRL_C_CHECK = """
assert CtrlC.calls > 2 and len(report) < len(events), "the send was not interrupted"
readme_mock.assert_stored(events)  # every event stored, each once
togai.close()
"""
OLD_UNKNOWN_LETTER = {
    "provider": "togai",
    "key": "evt-2",
    "status": "unknown",
    "reason": "request timed out",
    "event": {
        "schemaName": "api_calls",
        "id": "evt-2",
        "timestamp": "2024-05-01T10:15:30Z",
        "accountId": "acme-corp",
        "attributes": [{"name": "calls", "value": "1"}],
        "dimensions": {},
    },
    "at": "2024-05-01T10:15:31.000+00:00",
}
DEAD_LETTER = {
    "provider": "togai",
    "key": "evt-1",
    "status": "failed",
    "reason": "connection refused",
    "event": {
        "schemaName": "api_calls",
        "id": "evt-1",
        "timestamp": "2024-05-01T10:15:30Z",
        "accountId": "acme-corp",
        "attributes": [{"name": "calls", "value": "1"}],
        "dimensions": {},
    },
    "at": "2024-05-01T10:15:31.000+00:00",
}


@dataclass(frozen=True)
class Run:
    before: str = ""  # code the fragment relies on
    after: str = ""  # e.g. closing what the fragment opened
    paths: tuple[str, ...] = ()  # absolute paths in the block, moved under the test's directory
    # Lines put before a line of the block (as is): closing a sender the block replaces with another.
    insert: tuple[tuple[str, str], ...] = ()
    run_main: bool = False  # the block defines `async def main()` without running it
    subprocess: bool = False  # the block changes process-wide state that cannot be undone
    # The block uses the providers' own endpoints (made, never sent to): no base URL from the environment.
    provider_endpoints: bool = False


@dataclass(frozen=True)
class Skip:
    reason: str


PLAN: dict[str, Run | Skip] = {
    "Quick start: Togai": Run(run_main=True),
    "Quick start: Lago": Run(run_main=True),
    "Retries": Run(),
    # Builds the clients only: a Redis budget connects at the first request.
    "Rate limits": Run(
        before="from billing_events import Lago, Togai\n",
        paths=("/var/tmp/acme-togai.db",),
        provider_endpoints=True,
    ),
    "Interrupted calls": Run(before=CTRL_C_CLIENT, after=CTRL_C_CHECK),
    "Background sending": Run(before=TOGAI_CLIENT, after="sender.close(5)\ntogai.close()"),
    "Durable sending": Run(
        before=TOGAI_CLIENT,
        after="asyncio.run(sender.close(5))\ntogai.close()",
        paths=("/var/lib/myapp/billing",),
        insert=(("sender = ", "sender.close(5) if 'sender' in dir() else None\n"),),
    ),
    "Metrics": Run(subprocess=True),
    "Logging": Run(),
    "Logging #2": Run(),
    "Dead letters and replay": Run(
        before=TOGAI_CLIENT
        + "\nfrom pathlib import Path\n\n"
        + f"Path('dead-letters.jsonl').write_text({json.dumps(DEAD_LETTER)!r} + '\\n')\n",
        after="assert report.ok, report.counts\ntogai.close()",
    ),
    # The file holds a fresh failed letter and an unknown one written 60 days ago: the replay holds it back.
    "Dead letters and replay #2": Run(
        before=TOGAI_CLIENT
        + "\nfrom pathlib import Path\n\n"
        + f"Path('dead-letters.jsonl').write_text({json.dumps(DEAD_LETTER)!r} + '\\n' + "
        + f"{json.dumps(OLD_UNKNOWN_LETTER)!r} + '\\n')\n",
        after=(
            "assert not report.ok and [o.held_back for o in report] == [False, True], report\n"
            "assert report.to_resend() == []\ntogai.close()"
        ),
    ),
    "Dask": Skip(
        "needs a Dask cluster and s3:// storage; tests/backfills/ runs the adapter on a LocalCluster"
    ),
    "Spark": Skip("needs a Spark session and s3:// storage; tests/backfills/ runs the adapter on local[2]"),
    "Base URL and token": Run(),
    "Togai: `ingest` (one event)": Run(),
    "Togai: `ingest_batch` (up to 500 events)": Run(),
    "Togai, async": Run(),
    "Lago: `create_event`": Run(),
    "Lago: `create_batch_events` (up to 100 events, all-or-nothing)": Run(),
    "Lago: `event_estimate_fees`": Run(),
    "Lago: `find_event`": Run(),
    "Lago, async": Run(),
    "Testing your code with the mock": Skip(
        "a pytest module of its own: tests/plugin/test_readme_example.py"
    ),
}


@dataclass(frozen=True)
class Block:
    name: str
    line: int
    code: str


def python_blocks() -> list[Block]:
    blocks: list[Block] = []
    seen: dict[str, int] = {}
    heading = ""
    lines = README.read_text(encoding="utf-8").splitlines()
    at = 0
    while at < len(lines):
        line = lines[at]
        fence = re.match(r"```(\w*)$", line)
        if fence:
            end = next(i for i in range(at + 1, len(lines)) if lines[i].startswith("```"))
            if fence.group(1) == "python":
                seen[heading] = seen.get(heading, 0) + 1
                name = heading if seen[heading] == 1 else f"{heading} #{seen[heading]}"
                blocks.append(Block(name, at + 2, "\n".join(lines[at + 1 : end]) + "\n"))
            at = end + 1
            continue
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        at += 1
    return blocks


BLOCKS = python_blocks()


def test_every_python_block_is_planned() -> None:
    names = [block.name for block in BLOCKS]
    assert sorted(names) == sorted(PLAN), "README python blocks and PLAN differ: add a Run() or Skip()"


@pytest.fixture(scope="module")
def served() -> Iterator[ProviderMock]:
    with ProviderMock.create_served("togai") as mock:
        yield mock


@pytest.fixture
def readme_env(
    served: ProviderMock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    served.reset()
    urls = {"togai": served.base_url, "lago": served.origin + "/lago/api/v1"}
    monkeypatch.setenv("TOGAI_API_TOKEN", served.token)
    monkeypatch.setenv("LAGO_API_KEY", served.token)
    monkeypatch.setenv("TOGAI_BASE_URL", urls["togai"])
    monkeypatch.setenv("LAGO_API_URL", urls["lago"])
    monkeypatch.chdir(tmp_path)
    package_logger = logging.getLogger("billing_events")
    handlers = list(package_logger.handlers)
    yield urls
    package_logger.handlers[:] = handlers  # the logging examples add handlers to it


def substituted(code: str, plan: Run, urls: dict[str, str], tmp_path: Path) -> str:
    for url in TOGAI_URLS:
        code = code.replace(url, json.dumps(urls["togai"]))
    for url in LAGO_URLS:
        code = code.replace(url, json.dumps(urls["lago"]))
    if not plan.provider_endpoints:
        code = code.replace('endpoint="eu"', f"base_url={json.dumps(urls['lago'])}")
    for line, before in plan.insert:
        code = code.replace(f"\n{line}", f"\n{before}{line}")
    for path in plan.paths:
        moved = tmp_path / path.strip("/")
        moved.parent.mkdir(parents=True, exist_ok=True)
        code = code.replace(path, str(moved))
    return code


@pytest.mark.parametrize("block", BLOCKS, ids=[f"L{block.line}-{block.name}" for block in BLOCKS])
def test_readme_example_runs(
    block: Block,
    readme_env: dict[str, str],
    served: ProviderMock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    plan = PLAN[block.name]
    if isinstance(plan, Skip):
        pytest.skip(plan.reason)
    code = plan.before + substituted(block.code, plan, readme_env, tmp_path) + plan.after
    if plan.provider_endpoints:
        monkeypatch.delenv("TOGAI_BASE_URL")
        monkeypatch.delenv("LAGO_API_URL")
    if plan.subprocess:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        return
    namespace: dict[str, object] = {"__name__": "readme_example", "asyncio": asyncio, "readme_mock": served}
    exec(compile(code, f"README.md:{block.line}", "exec"), namespace)
    if plan.run_main:
        main = namespace.get("main")
        assert inspect.iscoroutinefunction(main)
        asyncio.run(main())
