"""Item 5: what is read from an answer is capped at what the answer can legitimately be."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from billing_events import Togai
from hostile.conftest import TOKEN
from hostile.server import Answer, HostileServer

# The client process itself takes ~60 MB; a capped read adds a few MiB at most.
PEAK_MB = 200
MEASURE = Path(__file__).with_name("measure.py")


def gzip_bomb(mib: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * (1024 * 1024)
    return b"".join([packer.compress(block) for _ in range(mib)]) + packer.flush()


def measured_send(provider: str, server: HostileServer) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(MEASURE), provider, server.url, TOKEN],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("provider", ["togai", "lago"])
def test_a_400_mb_error_page_is_not_read_into_memory(hostile: HostileServer, provider: str) -> None:
    hostile.answer(Answer("huge", status=500, store=False, size=400 * 1024 * 1024))
    result = measured_send(provider, hostile)
    assert result["peak_mb"] < PEAK_MB
    assert result["statuses"] != ["delivered"]
    assert "larger than" in result["reasons"][0] or "bytes; at most" in result["reasons"][0]


def test_an_endless_chunked_200_is_a_bad_answer(hostile: HostileServer) -> None:
    # "Endless" for the client: it stops the server long before its 1 GiB safety stop.
    hostile.answer(Answer("endless", status=200, size=1024 * 1024 * 1024))
    result = measured_send("lago", hostile)
    assert result["peak_mb"] < PEAK_MB
    assert result["statuses"] == ["unknown"]  # the server stored it, yet its answer was no answer
    assert hostile.stored_count == 2  # two attempts, and both stored: a later replay is deduplicated
    assert "larger than" in result["reasons"][0]


def test_a_gzip_bomb_is_capped_after_decoding(hostile: HostileServer) -> None:
    bomb = gzip_bomb(300)  # ~300 KB on the wire, 300 MiB once decoded
    hostile.answer(Answer("gzipped", status=200, body=bomb))
    result = measured_send("togai", hostile)
    assert result["peak_mb"] < PEAK_MB
    assert result["statuses"] != ["delivered"]


def test_an_answer_that_claims_gzip_but_is_not_is_retried(hostile: HostileServer) -> None:
    hostile.answer(Answer("bad_encoding"), Answer("ok"))
    result = measured_send("togai", hostile)
    # The first answer was unreadable, so the batch went again; the second answer settles it.
    assert result["statuses"] == ["delivered"]
    assert hostile.requests == 2


def test_the_environment_proxy_is_still_used(hostile: HostileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # The bounded transport is built by the overlay, so the overlay must honour HTTP_PROXY itself.
    monkeypatch.setenv("HTTP_PROXY", hostile.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with Togai(TOKEN, base_url="http://togai.invalid") as client:
        [outcome] = client.send(
            [
                {
                    "schemaName": "s",
                    "timestamp": "2024-05-01T12:00:00Z",
                    "accountId": "a",
                    "attributes": [],
                    "dimensions": {},
                }
            ]
        ).outcomes
    assert outcome.delivered
    assert hostile.stored_count == 1  # through the proxy (the hostile server), not to togai.invalid
