"""A checkpoint directory holds the backfill of one server: its settled rows say nothing about another's."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest

from backfills.support import Mock, backfill_for, lago_rows, stored_once
from billing_events.backfill import CheckpointError, send_partition
from billing_events.backfill._checkpoint import job_stamp


def test_the_job_file_keeps_its_server_and_refuses_another(tmp_path: Path) -> None:
    url = str(tmp_path / "ckpt")
    stamp = job_stamp(url, {}, "lago", "https://sandbox.example/api/v1")

    assert job_stamp(url, {}, "lago", "https://sandbox.example/api/v1") == stamp
    assert job_stamp(url, {}, "lago") == stamp  # a caller that names no server is not refused
    with pytest.raises(
        CheckpointError, match=re.escape("sent to https://sandbox.example/api/v1, not https://api.getlago")
    ):
        job_stamp(url, {}, "lago", "https://api.getlago.com/api/v1")


def test_a_job_file_written_before_servers_were_kept_takes_the_first_one_named(tmp_path: Path) -> None:
    url = str(tmp_path / "ckpt")
    stamp = job_stamp(url, {}, "lago")

    assert job_stamp(url, {}, "lago", "https://sandbox.example/api/v1") == stamp
    with pytest.raises(CheckpointError, match="use a directory per server"):
        job_stamp(url, {}, "lago", "https://api.getlago.com/api/v1")


def test_a_checkpoint_directory_of_another_server_is_refused(mock: Mock, tmp_path: Path) -> None:
    rows = lago_rows(5)
    sandbox = backfill_for(mock, "lago", tmp_path / "ckpt").prepare()
    send_partition(rows, sandbox)
    options = {**sandbox.client_options, "base_url": mock.url("lago").replace("127.0.0.1", "localhost")}
    production = attrs.evolve(sandbox, stamp=None, client_options=options)

    with pytest.raises(CheckpointError, match="use a directory per server"):
        send_partition(rows, production.prepare())
    assert stored_once(mock, "lago") == (5, 5)
