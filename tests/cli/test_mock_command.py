"""`billing-events mock`: a real process that serves both APIs and stops cleanly."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from cli.support import togai_event

COMMAND = str(Path(sys.executable).with_name("billing-events"))
TOKEN = "mock-command-token"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
LAGO_EVENT = {
    "transaction_id": "txn-1",
    "external_subscription_id": "sub-1",
    "code": "calls",
    "timestamp": 1714558530,
}


class Served:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def banner(self) -> dict[str, str]:
        """The `Name: value` lines printed before serving, read until the Lago store line."""
        fields: dict[str, str] = {}
        while "Lago store" not in fields:
            line = self.lines.get(timeout=START_TIMEOUT)
            assert line is not None, f"the mock exited before serving: {''.join(self.output)}"
            self.output.append(line)
            name, _, value = line.partition(":")
            fields[name.strip()] = value.strip()
        return fields

    def stop(self, signum: int) -> tuple[int, str]:
        self.process.send_signal(signum)
        code = self.process.wait(STOP_TIMEOUT)
        while (line := self.lines.get(timeout=STOP_TIMEOUT)) is not None:
            self.output.append(line)
        return code, "".join(self.output)


@contextmanager
def mock_command(*options: str) -> Iterator[Served]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MOCK_")}
    process = subprocess.Popen(
        [COMMAND, "mock", "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        yield Served(process)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(STOP_TIMEOUT)
        assert process.stdout is not None
        process.stdout.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_serves_both_apis_and_stops_cleanly(signum: int) -> None:
    faults = '{"seed": 3, "retry_after": 2}'
    with mock_command("--token", TOKEN, "--lago-store", "clickhouse", "--faults", faults) as served:
        banner = served.banner()
        assert banner["Bearer token"] == TOKEN
        assert banner["Lago store"] == "clickhouse"
        assert "'retry_after': 2" in banner["Faults"]
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(headers=headers, timeout=10) as http:
            togai = http.post(
                f"{banner['Togai base URL']}/ingest", json={"event": togai_event(1, id="evt-1")}
            )
            lago = [
                http.post(f"{banner['Lago base URL']}/events", json={"event": LAGO_EVENT}) for _ in range(2)
            ]
            refused = http.post(
                f"{banner['Togai base URL']}/ingest", json={}, headers={"Authorization": "Bearer x"}
            )
            origin = banner["Togai base URL"].removesuffix("/togai")
            stats = http.get(f"{origin}/_mock/stats").json()

        code, output = served.stop(signum)

    assert togai.is_success and all(response.is_success for response in lago)
    assert refused.status_code == 401
    # The ClickHouse store keeps both writes and shows one.
    assert stats["togai"]["stored"] == 1
    assert (stats["lago"]["arrivals"], stats["lago"]["stored"], stats["lago"]["store"]) == (
        2,
        1,
        "clickhouse",
    )
    assert code == 0
    assert output.rstrip().endswith("Mock stopped.")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stop_right_after_the_banner_is_clean(signum: int) -> None:
    with mock_command() as served:
        served.banner()
        code, output = served.stop(signum)

    assert code == 0
    assert output.rstrip().endswith("Mock stopped.")


def test_a_bad_fault_setting_is_a_usage_error_naming_it() -> None:
    result = subprocess.run(
        [COMMAND, "mock", "--faults", '{"rate_429": 2}'], capture_output=True, text=True, timeout=STOP_TIMEOUT
    )

    assert result.returncode == 64
    assert "rate_429: must be a number between 0 and 1" in result.stderr


@pytest.mark.parametrize("how", ["billing-events mock", "python -m billing_events.mock"])
def test_a_taken_port_is_a_usage_error(how: str) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MOCK_")}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = (
            [COMMAND, "mock", "--port", str(port)]
            if how == "billing-events mock"
            else [sys.executable, "-m", "billing_events.mock"]
        )
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=STOP_TIMEOUT,
            env={**env, "MOCK_PORT": str(port)},
        )

    assert result.returncode == 64
    # Worded the same both ways.
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr


def test_max_events_bounds_each_store_and_a_bad_value_is_a_usage_error() -> None:
    with mock_command("--token", TOKEN, "--max-events", "1") as served:
        banner = served.banner()
        with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as http:
            answers = [
                http.post(f"{banner['Togai base URL']}/ingest", json={"event": togai_event(n, id=f"evt-{n}")})
                for n in (1, 2)
            ]
        served.stop(signal.SIGTERM)
    bad = subprocess.run(
        [COMMAND, "mock", "--max-events", "0"], capture_output=True, text=True, timeout=STOP_TIMEOUT
    )

    assert [answer.status_code for answer in answers] == [202, 503]
    assert "limit of 1 events" in answers[1].json()["message"]
    assert bad.returncode == 64  # a usage error, before anything starts
    assert "argument --max-events: expected a positive number of events or none, got '0'" in bad.stderr


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"MOCK_FAULTS": '{"rate_429": 2}'}, "rate_429: must be a number between 0 and 1"),
        ({"MOCK_PORT": "not-a-port"}, "MOCK_PORT"),
        ({"MOCK_MAX_EVENTS": "0"}, "MOCK_MAX_EVENTS must be a positive number of events or none"),
    ],
    ids=["fault", "port", "max-events"],
)
def test_python_m_mock_exits_with_the_clis_usage_code(variables: dict[str, str], message: str) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MOCK_")}
    result = subprocess.run(
        [sys.executable, "-m", "billing_events.mock"],
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT,
        env={**env, **variables},
    )

    assert result.returncode == 64  # the same as `billing-events mock` for the same setting
    assert message in result.stderr
