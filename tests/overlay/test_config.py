from __future__ import annotations

import logging
import math

import httpx
import pytest

from billing_events import (
    ENDPOINTS,
    AsyncTogai,
    ConfigurationError,
    Lago,
    OutcomeStatus,
    RetryPolicy,
    SpoolConfig,
    Togai,
)

from .conftest import CANARY
from .scripted import Scripted, lago_event, lago_ok, togai_event


def test_missing_token_is_a_clear_error_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="TOGAI_API_TOKEN"):
        Togai()
    with pytest.raises(ConfigurationError, match="LAGO_API_KEY"):
        Lago(token="  ")


def test_token_and_base_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOGAI_API_TOKEN", "env-token")
    monkeypatch.setenv("TOGAI_BASE_URL", "http://togai.internal:8080/togai/")
    server = Scripted(default=httpx.Response(202, json={"success": True}))
    client = Togai(transport=server.transport())
    assert client.config.base_url == "http://togai.internal:8080/togai"
    client.send([togai_event(1)])
    assert server.requests[0].headers["authorization"] == "Bearer env-token"
    assert str(server.requests[0].url) == "http://togai.internal:8080/togai/ingestBatch"


@pytest.mark.parametrize(
    ("cls", "endpoint", "url"),
    [
        (Togai, None, "https://api.togai.com"),
        (Togai, "sandbox", "https://sandbox-api.togai.com"),
        (Lago, None, "https://api.getlago.com/api/v1"),
        (Lago, "eu", "https://api.eu.getlago.com/api/v1"),
    ],
)
def test_named_endpoints(cls: type[Togai] | type[Lago], endpoint: str | None, url: str) -> None:
    assert cls("t", endpoint=endpoint).config.base_url == url
    assert url in ENDPOINTS[cls.provider].values()


def test_self_hosted_lago_origin_gets_the_api_prefix() -> None:
    assert Lago("t", base_url="https://lago.example.com").config.base_url == "https://lago.example.com/api/v1"
    assert (
        Lago("t", base_url="https://lago.example.com/api/v1/").config.base_url
        == "https://lago.example.com/api/v1"
    )


def test_unknown_endpoint_and_bad_url_name_the_field() -> None:
    with pytest.raises(ConfigurationError, match="endpoint: unknown togai endpoint 'staging'"):
        Togai("t", endpoint="staging")
    with pytest.raises(ConfigurationError, match="base_url: must be an absolute http"):
        Lago("t", base_url="lago.example.com")


@pytest.mark.parametrize("timeout", [0, -1, math.inf, math.nan])
def test_timeouts_are_always_bounded(timeout: float) -> None:
    with pytest.raises(ConfigurationError, match="timeout: must be a positive, finite number"):
        Togai("t", timeout=timeout)


def test_default_timeouts_are_set_on_the_http_client() -> None:
    client = Togai("t")
    assert client.http.timeout.read == 10.0
    assert client.http.timeout.connect == 5.0


def test_batch_limits_are_configurable_for_self_hosted_servers() -> None:
    server = Scripted(default=lago_ok)
    client = Lago("t", base_url="http://lago.local", max_batch_events=250, transport=server.transport())
    client.send([lago_event(n) for n in range(500)])
    assert [len(keys) for keys in server.sent_keys("transaction_id")] == [250, 250]
    with pytest.raises(ConfigurationError, match="max_batch_events: must be an integer >= 1"):
        Lago("t", max_batch_events=0)


def test_the_token_never_leaks(tmp_path: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture) -> None:
    dead_letters = tmp_path / "dead.jsonl"  # type: ignore[operator]
    server = Scripted(
        httpx.Response(401, json={"message": "Credential is not valid"}),
        default=httpx.Response(202, json={"success": True}),
    )
    caplog.set_level(logging.DEBUG)
    client = Togai(
        CANARY, base_url="http://togai.local", transport=server.transport(), dead_letter_path=dead_letters
    )
    report = client.send([togai_event(1)])
    with client.background(flush_interval=0.01) as sender:
        sender.track(togai_event(2))
        sender.track({"not": "an event"})
        assert sender.flush(5)
    failed = report.outcomes[0]
    assert failed.status is OutcomeStatus.FAILED
    assert failed.error is not None
    texts = [
        repr(client),
        str(client),
        repr(client.config),
        repr(client.config.token),
        repr(sender),
        str(failed.error),
        repr(failed.error),
        repr(failed),
        caplog.text,
        dead_letters.read_text(),  # type: ignore[attr-defined]
    ]
    assert server.requests[0].headers["authorization"] == f"Bearer {CANARY}"
    for text in texts:
        assert CANARY not in text


def test_stats_are_logged_when_clients_and_senders_close(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="billing_events")
    server = Scripted(default=httpx.Response(202, json={"success": True}))
    client = Togai("t", base_url="http://togai.local", transport=server.transport())
    with client.background(flush_interval=0.01) as sender:
        sender.track(togai_event(1))
    client.send([togai_event(2)])
    client.close()
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("togai sender closed: Stats(enqueued=1, delivered=1") for m in messages)
    assert any(m.startswith("togai client closed: Stats(enqueued=1, delivered=1") for m in messages)


HUGE_INT = 10**5000  # Python refuses to write an int of more than 4,300 digits
LONG_TEXT = "x" * 100_000


@pytest.mark.parametrize("value", [HUGE_INT, LONG_TEXT], ids=["huge int", "long text"])
@pytest.mark.parametrize(
    ("make", "option"),
    [
        (lambda value: Togai("t", timeout=value), "timeout"),
        (
            lambda value: Togai("t", max_batch_events=-value if isinstance(value, int) else value),
            "max_batch_events",
        ),
        (lambda value: Togai("t", max_requests_per_second=value), "max_requests_per_second"),
        (lambda value: AsyncTogai("t", max_in_flight=value), "max_in_flight"),
        (lambda value: RetryPolicy(initial_delay=value), "initial_delay"),
        (lambda value: Togai("t").background(block_timeout=value), "block_timeout"),
        (
            lambda value: SpoolConfig("/tmp", max_bytes=-value if isinstance(value, int) else value),
            "max_bytes",
        ),
    ],
    ids=["timeout", "max_batch_events", "pace", "max_in_flight", "retry", "block_timeout", "spool"],
)
def test_a_bad_option_value_is_named_in_a_short_message(make: object, option: str, value: object) -> None:
    """A huge int (too long to write) or a long text is a ConfigurationError of a few lines, never a
    ValueError from repr() or a message the size of the value."""
    with pytest.raises(ConfigurationError, match=option) as raised:
        make(value)  # type: ignore[operator]
    assert len(str(raised.value)) < 300
