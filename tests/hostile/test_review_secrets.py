"""Review (secrets): the token, a Redis password or a checkpoint URL's password never shows.

The xfail tests are leaks found by the review; the others pin the important cases that hold.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fsspec
import httpx
import pytest
from cli.support import lago_event, togai_event, write_jsonl

from billing_events import ConfigurationError, Lago, RetryPolicy, Togai
from billing_events.backfill import Backfill, send_partition
from billing_events.cli import main
from billing_events.mock.handle import ProviderMock
from hostile.conftest import TOKEN as HOSTILE_TOKEN
from hostile.server import Answer, HostileServer, echo_head_server

FAST = RetryPolicy(max_attempts=1, deadline=5.0, initial_delay=0.001, max_delay=0.001)
# A token with the characters that escape differently in JSON, URLs and reprs.
TOKEN = 'canary/tok&en+5c1e9a7b3d=="x\\y%z'
PLAIN = "canary-token-5c1e9a7b3d0f"
LOGGERS = ("httpx", "httpcore", "billing_events", "uvicorn", "")


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name or None)
    return caplog


def send_one(
    client_type: type[Togai] | type[Lago],
    answer: Callable[[httpx.Request], httpx.Response],
    token: str = TOKEN,
    dead: Path | None = None,
) -> tuple[Any, str]:
    """Send one event to a server answering ``answer``: its outcome, and every text a user may see of it."""
    event = togai_event(0) if client_type is Togai else lago_event(0)
    with client_type(
        token,
        base_url="http://provider.local",
        transport=httpx.MockTransport(answer),
        retry=FAST,
        dead_letter_path=dead,
    ) as client:
        report = client.send([event])
    [outcome] = report.outcomes
    raised = ""
    try:
        report.raise_for_failures()
    except Exception as exc:
        raised = f"{exc} {exc!r} {exc.args!r}"
    texts = f"{outcome.reason} {outcome!r} {outcome.error} {outcome.error!r} {raised}"
    if dead is not None and dead.exists():
        texts += dead.read_text("utf-8")
    return outcome, texts


# -- Defects -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "content_type"),
    [("utf-16", "application/json"), ("utf-16", "text/plain; charset=utf-16")],
)
@pytest.mark.parametrize("client_type", [Togai, Lago])
def test_a_token_echoed_in_a_utf16_body_is_scrubbed(
    client_type: type[Togai] | type[Lago],
    encoding: str,
    content_type: str,
    tmp_path: Path,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    # JSON read from bytes is UTF-8, UTF-16 or UTF-32 (httpx's response.json() detects which); a text body is
    # decoded by its declared charset. Either way the text the library reads is the token itself.
    def answer(request: httpx.Request) -> httpx.Response:
        said = request.headers["authorization"]
        body = json.dumps({"message": f"invalid credentials: {said}"}, ensure_ascii=False)
        if content_type.startswith("text/"):
            body = f"invalid credentials: {said}"
        return httpx.Response(401, content=body.encode(encoding), headers={"Content-Type": content_type})

    outcome, texts = send_one(client_type, answer, dead=tmp_path / "dead.jsonl")

    assert not outcome.delivered
    assert TOKEN not in texts
    assert TOKEN not in debug_logs.text


@pytest.fixture
def malformed_head() -> Iterator[str]:
    # A header line without its colon that holds the request's Authorization (a debugging proxy).
    with echo_head_server(lambda auth: b"HTTP/1.1 200 OK\r\nX-Seen " + auth + b"\r\n") as url:
        yield url


def test_a_token_echoed_in_a_malformed_header_line_stays_out_of_debug_logs(
    malformed_head: str, debug_logs: pytest.LogCaptureFixture
) -> None:
    with Togai(PLAIN, base_url=malformed_head, retry=FAST) as client:
        [outcome] = client.send([togai_event(1)]).outcomes

    assert PLAIN not in (outcome.reason or "")  # the outcome is scrubbed (pinned elsewhere too)
    assert any(record.name.startswith("httpcore") for record in debug_logs.records)
    leaking = [record.getMessage() for record in debug_logs.records if PLAIN in record.getMessage()]
    assert leaking == []


URL_SPELLINGS = {
    # Python's urllib.parse.quote() as called by default (safe="/"), as a Python server builds a Location.
    "quote_keeps_slash": lambda token: urllib.parse.quote(token),
    # RFC 3986 percent-encoding with lower-case hex digits (equivalent to upper case, section 2.1).
    "lower_case_hex": lambda token: urllib.parse.quote(token, safe="").lower(),
}


@pytest.mark.parametrize("spelling", sorted(URL_SPELLINGS))
def test_a_url_encoded_token_in_a_redirect_location_is_scrubbed(spelling: str) -> None:
    encoded = URL_SPELLINGS[spelling](TOKEN)
    assert urllib.parse.unquote(encoded).lower() == TOKEN.lower()  # decoding gives the token back

    def answer(request: httpx.Request) -> httpx.Response:
        location = f"https://login.example/sso?api_key={encoded}"
        return httpx.Response(302, headers={"Location": location}, content=b"moved")

    outcome, texts = send_one(Lago, answer)

    assert "redirected to https://login.example/sso?api_key=" in (outcome.reason or "")
    assert encoded not in texts


@pytest.mark.parametrize("encode", [base64.b64encode, base64.urlsafe_b64encode], ids=["standard", "urlsafe"])
def test_a_base64_encoded_token_echoed_in_an_error_body_is_scrubbed(encode: Callable[[bytes], bytes]) -> None:
    encoded = encode(PLAIN.encode()).decode()

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"message": f"no account for key {encoded}"})

    outcome, texts = send_one(Togai, answer, token=PLAIN)

    assert not outcome.delivered
    assert encoded not in texts


def test_a_checkpoint_store_error_masks_the_password_of_the_url(tmp_path: Path) -> None:
    url = f"memory://backfill-user:s3cret-pass@store/{tmp_path.name}"
    backfill = Backfill(
        "lago", url, client_options={"token": PLAIN, "base_url": "http://127.0.0.1:9", "retry": FAST}
    ).prepare()
    # Something in the store is not what the backfill expects: ``partitions`` is a file, not a directory.
    memory = fsspec.filesystem("memory")
    memory.pipe_file(f"/backfill-user:s3cret-pass@store/{tmp_path.name}/partitions", b"not a directory")

    with pytest.raises(Exception) as raised:  # noqa: PT011 - any error: what matters is its text
        send_partition([{"external_subscription_id": "sub_1", "code": "api_calls"}], backfill)

    shown = f"{raised.value} {raised.value!r} {raised.value.args!r}"
    assert "s3cret-pass" not in shown


def test_a_redis_budget_url_the_parser_refuses_is_not_repeated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A password holding a full-width '#' (U+FF03): NFKC turns it into '#', which urlsplit refuses.
    url = "redis://:hunter2\uff03secret@redis.internal:6379/0?key=acme"
    with pytest.raises(ConfigurationError) as refused:
        Lago(PLAIN, base_url="http://127.0.0.1:9", max_requests_per_second=5, rate_budget=url)
    assert "hunter2" not in f"{refused.value} {refused.value!r}"

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LAGO_API_KEY", PLAIN)
    source = write_jsonl(tmp_path / "events.jsonl", [lago_event(0)])
    code = main(
        [
            "ingest",
            "lago",
            str(source),
            "--base-url",
            "http://127.0.0.1:9",
            "--max-requests-per-second",
            "5",
            "--rate-budget",
            url,
        ]
    )
    out, err = capsys.readouterr()
    assert code == 64
    assert "hunter2" not in out + err


# -- What holds --------------------------------------------------------------------------------------


def _echo_everywhere(status: int, body: Callable[[str], object]) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        said = request.headers["authorization"]
        token = said.split(" ", 1)[1]
        headers = {
            "WWW-Authenticate": f'Bearer realm="api", error="invalid_token", token="{token}"',
            "Retry-After": said,  # garbage in a 429's Retry-After
            "X-Request-Id": token,
        }
        return httpx.Response(
            status,
            json=body(token),
            headers=headers,
            extensions={"reason_phrase": f"Refused {urllib.parse.quote_plus(token)}".encode()},
        )

    return answer


ECHOES: dict[str, tuple[type[Togai] | type[Lago], int, Callable[[str], object]]] = {
    "togai_207_per_event": (
        Togai,
        207,
        lambda token: {
            "success": False,
            "details": {"rejectedEvents": [{"index": 0, "id": "x", "message": f"bad key {token}"}]},
        },
    ),
    "lago_422_error_details": (
        Lago,
        422,
        lambda token: {
            "status": 422,
            "error": "Unprocessable Entity",
            "code": "validation_errors",
            "error_details": {"0": {token: [f"value_is_invalid {token}"]}},
        },
    ),
    "togai_429_garbage_retry_after": (Togai, 429, lambda token: {"message": f"slow down, {token}"}),
    "lago_401_long_body_at_the_clip": (
        Lago,
        401,
        # The token straddles the 500-character cut of a body's text and the reason's own clip.
        lambda token: {"message": "x" * 480 + token + "y" * 600},
    ),
}


@pytest.mark.parametrize("case", sorted(ECHOES))
def test_a_token_with_escaping_characters_echoed_anywhere_in_an_answer_stays_out(
    case: str, tmp_path: Path, debug_logs: pytest.LogCaptureFixture
) -> None:
    client_type, status, body = ECHOES[case]
    outcome, texts = send_one(client_type, _echo_everywhere(status, body), dead=tmp_path / "dead.jsonl")

    assert not outcome.delivered
    for form in (TOKEN, json.dumps(TOKEN)[1:-1], urllib.parse.quote_plus(TOKEN), TOKEN[:20], TOKEN[-12:]):
        assert form not in texts
        assert form not in debug_logs.text


def test_the_served_mock_logs_no_token_it_refuses(
    lago_mock_server: ProviderMock, debug_logs: pytest.LogCaptureFixture
) -> None:
    client = lago_mock_server.new_client(token=PLAIN, retry=FAST)
    assert isinstance(client, Lago)
    [outcome] = client.send([lago_event(0)]).outcomes
    with pytest.raises(Exception) as raised:  # noqa: PT011 - the refusal, whatever its class
        client.find_event("tx-1")

    assert not outcome.delivered
    assert any(record.name.startswith("httpx") for record in debug_logs.records)
    assert PLAIN not in debug_logs.text
    assert PLAIN not in f"{raised.value} {raised.value!r} {outcome!r}"


def test_a_token_echoed_to_find_event_stays_out_of_httpx_logs(
    hostile: HostileServer, debug_logs: pytest.LogCaptureFixture
) -> None:
    hostile.answer(Answer("echo_token", status=500, store=False))
    with Lago(HOSTILE_TOKEN, base_url=hostile.url, retry=FAST) as client, pytest.raises(Exception) as raised:  # noqa: PT011
        client.find_event("tx-1")

    assert any(record.getMessage().startswith("HTTP Request:") for record in debug_logs.records)
    assert "***" in debug_logs.text  # the echoed reason phrase is logged, scrubbed
    assert HOSTILE_TOKEN not in debug_logs.text
    assert HOSTILE_TOKEN not in f"{raised.value} {raised.value!r} {raised.value.args!r}"
