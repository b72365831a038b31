"""Process-level behaviour, in subprocesses: the at-exit flush and life after fork()."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from billing_events import read_dead_letters
from billing_events.mock import create_app
from billing_events.mock.testing import serve_in_thread

TOKEN = "test-token"
EVENT = """
def event(n):
    return {"schemaName": "api_calls", "timestamp": "2024-05-01T10:15:30Z", "accountId": "acme",
            "attributes": [{"name": "calls", "value": str(n)}], "dimensions": {}}
"""


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with serve_in_thread(create_app()) as url:
        yield url


def run_script(body: str, **env: str) -> subprocess.CompletedProcess[str]:
    script = "import os, sys, json\nfrom billing_events import Togai\n" + EVENT + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,  # a hanging exit hook fails the test here
        check=False,
    )


def togai_stats(server: str) -> dict[str, int]:
    stats: dict[str, int] = httpx.get(f"{server}/_mock/stats").json()["togai"]
    return stats


def test_events_still_queued_at_exit_are_flushed(server: str) -> None:
    httpx.post(f"{server}/_mock/reset")
    result = run_script(
        """
        sender = Togai(os.environ["TOKEN"], base_url=os.environ["BASE"]).background(flush_interval=3600)
        for n in range(50):
            sender.track(event(n))
        print(sender.stats.in_queue)
        # no flush, no close: the at-exit hook must deliver
        """,
        TOKEN=TOKEN,
        BASE=f"{server}/togai",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "50"
    assert togai_stats(server)["stored"] == 50


def test_the_exit_hook_never_hangs_on_a_silent_server(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections, never answers
    port = silent.getsockname()[1]
    dead = tmp_path / "dead.jsonl"
    try:
        result = run_script(
            """
            client = Togai("t", base_url=os.environ["BASE"], timeout=30, dead_letter_path=os.environ["DEAD"])
            sender = client.background(flush_interval=0.01, atexit_timeout=0.5)
            for n in range(20):
                sender.track(event(n))
            """,
            BASE=f"http://127.0.0.1:{port}",
            DEAD=str(dead),
        )
    finally:
        silent.close()
    assert result.returncode == 0, result.stderr
    letters = list(read_dead_letters(dead))
    assert len(letters) == 20
    assert {letter.status for letter in letters} <= {"unknown", "failed"}


def test_a_forked_child_starts_clean_and_works(server: str, tmp_path: Path) -> None:
    httpx.post(f"{server}/_mock/reset")
    result = run_script(
        """
        sender = Togai(os.environ["TOKEN"], base_url=os.environ["BASE"]).background(flush_interval=3600)
        sender.track(event(0))
        assert sender.flush(10)            # the parent now holds a pooled connection
        parent_keys = [sender.track(event(n)) for n in range(1, 6)]   # queued, not yet sent
        pid = os.fork()
        if pid == 0:
            before = sender.stats
            child_keys = [sender.track(event(n)) for n in range(100, 103)]
            ok = sender.flush(10)
            after = sender.stats
            report = {"before": [before.enqueued, before.in_queue], "delivered": after.delivered,
                      "flushed": ok, "overlap": sorted(set(child_keys) & set(parent_keys))}
            with open(os.environ["CHILD_OUT"], "w") as out:
                json.dump(report, out)
            os._exit(0)
        parent_keys += [sender.track(event(n)) for n in range(200, 203)]   # the parent goes on minting keys
        _, status = os.waitpid(pid, 0)
        assert sender.flush(10)
        print(json.dumps({"child_exit": status, "parent_delivered": sender.stats.delivered}))
        """,
        TOKEN=TOKEN,
        BASE=f"{server}/togai",
        CHILD_OUT=str(tmp_path / "child.json"),
    )
    assert result.returncode == 0, result.stderr
    parent = json.loads(result.stdout)
    child = json.loads((tmp_path / "child.json").read_text())
    assert parent == {"child_exit": 0, "parent_delivered": 9}
    assert child == {"before": [0, 0], "delivered": 3, "flushed": True, "overlap": []}
    # 9 from the parent, 3 from the child: nothing lost, nothing sent twice, no key minted twice.
    stats = togai_stats(server)
    assert (stats["stored"], stats["duplicates"]) == (12, 0)


def test_a_lock_held_by_another_thread_at_fork_does_not_hang_the_child(tmp_path: Path) -> None:
    result = run_script(
        """
        import threading
        client = Togai("t", base_url="http://127.0.0.1:9", dead_letter_path=os.environ["DEAD"])
        held, release = threading.Event(), threading.Event()

        def writer():  # a thread in the middle of a dead-letter write when the fork happens
            with client.dead_letter_file._lock, client._stats._lock:
                held.set()
                release.wait(30)

        threading.Thread(target=writer, daemon=True).start()
        held.wait(10)
        pid = os.fork()
        if pid == 0:
            import signal
            signal.alarm(10)  # a hang ends the child here
            report = client.send([{"schemaName": ""}])   # rejected: a dead letter and a counter update
            os._exit(0 if report.outcomes[0].status.value == "rejected" else 1)
        release.set()
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status))
        """,
        DEAD=str(tmp_path / "dead.jsonl"),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
    assert len(list(read_dead_letters(tmp_path / "dead.jsonl"))) == 1


CHILDREN = """
import multiprocessing
import os
import sys

def event(n):
    return {"schemaName": "api_calls", "timestamp": "2024-05-01T10:15:30Z", "accountId": "acme",
            "attributes": [{"name": "calls", "value": str(n)}], "dimensions": {}}

def make_sender():
    from billing_events import Togai

    return Togai(os.environ["TOKEN"], base_url=os.environ["BASE"]).background(flush_interval=3600)

# Made at import: a forked child inherits it (emptied), a spawned child makes its own at import;
sender = make_sender() if sys.argv[3] == "import" else None

def work(first):
    global sender
    if sender is None:  # or the child imports the library and makes it only while it runs
        sender = make_sender()
    for n in range(first, first + 100):
        sender.track(event(n))
    return sender.stats.in_queue   # nothing sent yet: the child's exit must deliver it

if __name__ == "__main__":
    context = multiprocessing.get_context(sys.argv[1])
    child = context.Process(target=work, args=(0,))
    child.start()
    child.join(60)
    queued = []
    if sys.argv[2] == "pool":
        pool = context.Pool(2, maxtasksperchild=1)
        queued = pool.map(work, [1000, 2000, 3000, 4000])
        pool.close()
        pool.join()
    print(child.exitcode, queued)
"""


# Spawned children start a whole interpreter: one Process child is enough to cover those start methods.
@pytest.mark.parametrize(
    ("method", "pool", "made", "stored"),
    [("fork", True, "import", 500), ("spawn", False, "import", 100), ("forkserver", False, "in-child", 100)],
)
def test_multiprocessing_children_deliver_what_they_tracked(
    server: str, tmp_path: Path, method: str, pool: bool, made: str, stored: int
) -> None:
    httpx.post(f"{server}/_mock/reset")
    script = tmp_path / "children.py"
    script.write_text(CHILDREN)
    result = subprocess.run(
        [sys.executable, str(script), method, "pool" if pool else "process", made],
        env={**os.environ, "TOKEN": TOKEN, "BASE": f"{server}/togai"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    child_exit, queued = result.stdout.split(maxsplit=1)
    assert (child_exit, json.loads(queued)) == ("0", [100] * 4 if pool else [])
    # One Process child and four Pool tasks, 100 events each, all still queued when their task
    # returned: each child delivered them on its way out, once.
    stats = togai_stats(server)
    assert (stats["stored"], stats["duplicates"]) == (stored, 0)


def test_a_multiprocessing_child_gives_up_at_its_exit_timeout(tmp_path: Path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections, never answers
    dead = tmp_path / "dead.jsonl"
    try:
        result = run_script(
            """
            import multiprocessing
            client = Togai("t", base_url=os.environ["BASE"], timeout=30, dead_letter_path=os.environ["DEAD"])
            sender = client.background(flush_interval=0.01, atexit_timeout=0.5)

            def work():
                for n in range(100):
                    sender.track(event(n))

            child = multiprocessing.get_context("fork").Process(target=work)
            child.start()
            child.join(30)
            print(child.exitcode)
            """,
            BASE=f"http://127.0.0.1:{silent.getsockname()[1]}",
            DEAD=str(dead),
        )
    finally:
        silent.close()
    assert (result.returncode, result.stdout.strip()) == (0, "0"), result.stderr
    letters = list(read_dead_letters(dead))
    assert len(letters) == 100
    assert {letter.status for letter in letters} <= {"unknown", "failed"}
