"""Item 14: a token never lands in a reason, an exception, a dead letter, a log, CLI output or a checkpoint."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from cli.support import lago_event, togai_event, write_jsonl

from billing_events import AsyncLago, AsyncTogai, ConfigurationError, Lago, RetryPolicy, ServerError, Togai
from billing_events.backfill import Backfill, send_partition
from billing_events.cli import main
from hostile.conftest import TOKEN
from hostile.server import Answer, HostileServer

FAST = RetryPolicy(max_attempts=2, deadline=5.0, initial_delay=0.01, max_delay=0.01)


def files_text(root: Path) -> str:
    return "\n".join(path.read_text("utf-8", "replace") for path in root.rglob("*") if path.is_file())


@pytest.mark.parametrize("status", [400, 401, 422, 500])
@pytest.mark.parametrize("client_type", [Togai, Lago])
def test_a_token_echoed_by_the_server_is_scrubbed(
    hostile: HostileServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    status: int,
    client_type: type[Togai] | type[Lago],
) -> None:
    hostile.answer(Answer("echo_token", status=status, store=False))
    dead = tmp_path / "dead.jsonl"
    event = togai_event(0) if client_type is Togai else lago_event(0)
    with (
        caplog.at_level(logging.DEBUG),
        client_type(TOKEN, base_url=hostile.url, retry=FAST, dead_letter_path=dead) as client,
    ):
        report = client.send([event])
        try:
            report.raise_for_failures()
        except Exception as exc:  # the exception a caller would log
            raised = f"{exc!r} {exc}"
    assert f"Bearer {TOKEN}" in hostile.authorizations  # the server did have it to echo
    [outcome] = report.outcomes
    assert not outcome.delivered
    assert "***" in (outcome.reason or "")  # the echo is kept, without the secret
    for text in (
        outcome.reason or "",
        str(outcome.error),
        repr(outcome),
        raised,
        dead.read_text(),
        caplog.text,
    ):
        assert TOKEN not in text


def test_a_token_echoed_to_a_request_response_call_is_scrubbed(hostile: HostileServer) -> None:
    hostile.answer(Answer("echo_token", status=500, store=False))
    with Lago(TOKEN, base_url=hostile.url, retry=FAST) as client, pytest.raises(ServerError) as raised:
        client.find_event("tx-1")
    assert TOKEN not in str(raised.value) and "***" in str(raised.value)


def test_the_cli_never_prints_or_stores_an_echoed_token(
    hostile: HostileServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hostile.answer(Answer("echo_token", status=400, store=False))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOGAI_API_TOKEN", TOKEN)
    source = write_jsonl(tmp_path / "events.jsonl", [togai_event(i) for i in range(4)])
    code = main(
        ["ingest", "togai", str(source), "--base-url", hostile.url, "--report", str(tmp_path / "r.json")]
    )
    out, err = capsys.readouterr()
    assert code != 0
    assert "***" in out + err + files_text(tmp_path)  # the problems were reported, scrubbed
    assert TOKEN not in out + err
    assert TOKEN not in files_text(tmp_path)  # dead letters, report, checkpoint


@pytest.mark.parametrize(
    "url", ["https://user:hunter2-secret@billing.example.com", "https://:hunter2-secret@x.example"]
)
def test_credentials_in_base_url_are_refused_without_repeating_them(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        Togai("a-real-token-123456", base_url=url)
    assert "credentials" in str(refused.value)
    assert "hunter2" not in str(refused.value) and "hunter2" not in repr(refused.value)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAGO_API_KEY", "a-real-token-123456")
    source = write_jsonl(tmp_path / "events.jsonl", [lago_event(0)])
    code = main(["ingest", "lago", str(source), "--base-url", url])
    out, err = capsys.readouterr()
    assert code != 0
    assert "hunter2" not in out + err


# Characters that JSON encoders escape: "/" (PHP's json_encode), "&" (Go's and Rails' HTML-safe escaping).
ODD_TOKEN = "canary/tok&en+5c1e9a7b3d"
ESCAPES = {
    "slash": lambda text: text.replace("/", "\\/"),
    "html_safe": lambda text: text.replace("&", "\\u0026"),
    "every_character": lambda text: "".join(f"\\u{ord(char):04X}" for char in text),
}


def escaped_echo(style: str, status: int = 401, kind: str = "error") -> Answer:
    """An answer that echoes ODD_TOKEN the way some JSON encoder would: escaped, yet the same string."""
    said = ESCAPES[style](ODD_TOKEN)
    body = '{"message":"invalid credentials: Bearer ' + said + '","error":"' + said + '"}'
    return Answer(kind, status=status, body=body.encode(), store=False, interval=0.001)


@pytest.mark.parametrize("style", sorted(ESCAPES))
@pytest.mark.parametrize("client_type", [Togai, Lago])
def test_a_token_echoed_with_json_escapes_is_scrubbed(
    hostile: HostileServer, style: str, client_type: type[Togai] | type[Lago]
) -> None:
    hostile.answer(escaped_echo(style))
    event = togai_event(0) if client_type is Togai else lago_event(0)
    with client_type(ODD_TOKEN, base_url=hostile.url, retry=FAST) as client:
        [outcome] = client.send([event]).outcomes
    assert not outcome.delivered
    assert "***" in (outcome.reason or "")  # the echo is kept, without the secret
    for text in (outcome.reason or "", str(outcome.error), repr(outcome.error)):
        assert ODD_TOKEN not in text


def test_a_token_echoed_with_json_escapes_one_byte_at_a_time_is_scrubbed(hostile: HostileServer) -> None:
    # Each byte may arrive in a read of its own: an escaped token cut between two reads.
    hostile.answer(escaped_echo("every_character", kind="trickle"))
    event = lago_event(0)
    with Lago(ODD_TOKEN, base_url=hostile.url, retry=FAST) as client:
        [outcome] = client.send([event]).outcomes
    assert not outcome.delivered
    assert "***" in (outcome.reason or "")
    assert ODD_TOKEN not in (outcome.reason or "") and ODD_TOKEN not in str(outcome.error)


def test_a_token_echoed_with_json_escapes_stays_out_of_a_backfill_summary(
    hostile: HostileServer, tmp_path: Path
) -> None:
    hostile.answer(escaped_echo("html_safe", status=400))
    backfill = Backfill(
        "lago",
        str(tmp_path / "ckpt"),
        client_options={"token": ODD_TOKEN, "base_url": hostile.url, "retry": FAST},
    ).prepare()

    summary = send_partition([{"external_subscription_id": "sub_1", "code": "api_calls"}], backfill)

    assert summary["rejected"] == 1
    assert "***" in summary["problem"]
    assert ODD_TOKEN not in summary["problem"]
    assert ODD_TOKEN.encode() not in b"".join(path.read_bytes() for path in tmp_path.rglob("*.*"))


# A token pasted with a stray character: a NUL, a line break inside it, a non-ASCII character.
UNSENDABLE = ["\x00", "\r\nX-Injected: 1", "\u2026", "\u00a0tail"]


@pytest.mark.parametrize("stray", UNSENDABLE)
@pytest.mark.parametrize("client_type", [Togai, Lago, AsyncTogai, AsyncLago])
def test_a_token_that_cannot_be_sent_is_refused_without_repeating_it(
    stray: str, client_type: type[Any]
) -> None:
    # httpx's own errors for such a header quote the whole header, token included.
    with pytest.raises(ConfigurationError) as refused:
        client_type(TOKEN + stray, base_url="http://127.0.0.1:9")
    assert "token" in str(refused.value)
    assert TOKEN not in f"{refused.value} {refused.value!r}"


@pytest.mark.parametrize("stray", UNSENDABLE[1:])  # an environment variable cannot hold a NUL
def test_the_cli_refuses_a_token_that_cannot_be_sent_without_printing_it(
    stray: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAGO_API_KEY", TOKEN + stray)
    source = write_jsonl(tmp_path / "events.jsonl", [lago_event(0)])

    code = main(["ingest", "lago", str(source), "--base-url", "http://127.0.0.1:9"])

    out, err = capsys.readouterr()
    assert code == 64
    assert "token" in err
    assert TOKEN not in out + err + files_text(tmp_path)
