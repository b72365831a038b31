"""``billing-events spool status DIR``: the files of a spool directory and what they hold."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

from billing_events import Togai

from .conftest import Mock
from .support import RunCli, togai_event


def test_status_lists_a_live_senders_file_and_its_pid(mock: Mock, run_cli: RunCli, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    with Togai(base_url=mock.togai_url) as togai:
        sender = togai.background(spool=spool, flush_interval=3600, flush_at_events=10_000)
        for index in range(12):
            sender.track(togai_event(index))
        result = run_cli("spool", "status", str(spool), "--json")
        [line] = [orjson.loads(text) for text in result.out.splitlines()]
        assert result.code == 0
        assert (line["live"], line["pid"]) == (True, os.getpid())
        table = run_cli("spool", "status", str(spool))
        assert f"live (pid {os.getpid()})" in table.out
        sender.close(30)
    assert run_cli("spool", "status", str(spool)).out.strip() == f"{spool}: no spool files"


def test_status_of_a_missing_directory_is_a_usage_error(run_cli: RunCli, tmp_path: Path) -> None:
    result = run_cli("spool", "status", str(tmp_path / "nowhere"))
    assert result.code == 64
    assert "not a directory" in result.err
