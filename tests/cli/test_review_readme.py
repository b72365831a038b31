"""The README as a contract: claims of "Configuration", "Errors", "Secrets" and "Command line" checked
against the public API, with httpx.MockTransport or the in-process mock. Each xfail names a drift."""

from __future__ import annotations

import decimal
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from billing_events import (
    AuthError,
    ConfigurationError,
    InvalidEventError,
    Lago,
    OutcomeStatus,
    RateLimitedError,
    RetryPolicy,
    Togai,
)
from cli.conftest import Mock
from cli.support import RunCli, togai_event, write_jsonl

FAST = RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.002, max_retry_after=0.01)


def lago_echo(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"events": json.loads(request.content)["events"]})


def lago_client(handler: Any = lago_echo) -> Lago:
    return Lago("t", base_url="http://lago.local", transport=httpx.MockTransport(handler), retry=FAST)


def lago_event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "transaction_id": "txn-1",
        "external_subscription_id": "sub_acme_growth",
        "code": "api_calls",
        "timestamp": 1714558530,
        "properties": {"calls": 1},
    }
    event.update(changes)
    return event


# -- Configuration: client.validate(event) -----------------------------------------------------------


def test_validate_names_field_and_rule_as_documented() -> None:
    """README "Configuration": the example message of validate(), word for word."""
    togai = Togai(
        "t", base_url="http://togai.local", transport=httpx.MockTransport(lambda r: httpx.Response(202))
    )
    event = togai_event(1, attributes=[{"name": "calls", "value": "3,5"}])
    with pytest.raises(InvalidEventError) as raised:
        togai.validate(event)
    assert str(raised.value) == (
        "event.attributes[0].value: must be a decimal number written as a string, e.g. \"12.5\", got a string '3,5'"
    )
    assert raised.value.field == "event.attributes[0].value"


def test_validate_accepts_a_lago_event_without_a_transaction_id() -> None:
    lago = lago_client()
    event = lago_event()
    del event["transaction_id"]  # README quick start: "optional: one is assigned if missing"
    assert lago.send([event]).outcomes[0].status is OutcomeStatus.DELIVERED
    lago.validate(event)  # raises today: "event.transaction_id: is required"


@pytest.mark.parametrize(
    ("properties", "field"),
    [
        ({"ratio": float("nan")}, "event.properties.ratio"),
        ({"ratio": float("inf")}, "event.properties.ratio"),
        ({"amount": decimal.Decimal("1.5")}, "event.properties.amount"),
        ({"tags": {"a"}}, "event.properties.tags"),
        ({"count": 2**70}, "event.properties.count"),
        ({"blob": "x" * 2_000_000}, "event"),
    ],
    ids=["nan", "infinity", "decimal", "set", "int-beyond-64-bits", "larger-than-a-request"],
)
def test_validate_refuses_what_send_refuses(properties: dict[str, Any], field: str) -> None:
    lago = lago_client()
    event = lago_event(properties=properties)
    outcome = lago.send([event]).outcomes[0]
    assert outcome.status is OutcomeStatus.REJECTED and outcome.reason.startswith(field)
    # README: "client.validate(event) checks one event without sending it. It raises InvalidEventError".
    with pytest.raises(InvalidEventError) as raised:
        lago.validate(event)
    assert raised.value.field == field


# -- Errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"max_attempts": 0},
        {"deadline": -1.0},
        {"initial_delay": float("inf")},
        {"max_retry_after": float("nan")},
    ],
)
def test_a_bad_retry_policy_is_a_configuration_error(options: dict[str, float]) -> None:
    # README "Errors": ConfigurationError covers "bad options"; timeout=0 on a client already is one.
    with pytest.raises(ConfigurationError):
        RetryPolicy(**options)


def test_a_bad_client_option_is_a_configuration_error_naming_it() -> None:
    for options in ({"timeout": None}, {"timeout": 0}, {"connect_timeout": float("inf")}):
        with pytest.raises(ConfigurationError, match=next(iter(options))):
            Togai("t", base_url="http://togai.local", **options)


LAGO_403 = {"status": 403, "error": "Forbidden", "code": "write_action_not_allowed_for_event"}


@pytest.mark.parametrize("call", ["find_event", "estimate_fees"])
def test_a_403_from_a_lago_call_is_an_auth_error(call: str) -> None:
    requests: list[httpx.Request] = []

    def forbidden(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(403, json=LAGO_403)

    lago = lago_client(forbidden)
    calls = {
        "find_event": lambda: lago.find_event("txn-1"),
        "estimate_fees": lambda: lago.estimate_fees("seats", "sub_acme_growth", {"seats": 2}),
    }
    with pytest.raises(AuthError) as raised:  # README "Errors": AuthError  401, 403
        calls[call]()
    assert raised.value.status == 403 and len(requests) == 1


def test_a_403_on_send_is_failed_with_an_auth_error() -> None:
    lago = lago_client(lambda request: httpx.Response(403, json=LAGO_403))
    outcome = lago.send([lago_event()]).outcomes[0]
    assert outcome.status is OutcomeStatus.FAILED and isinstance(outcome.error, AuthError)


@pytest.mark.parametrize(
    ("status", "error_type", "requests_made"),
    [(429, RateLimitedError, FAST.max_attempts), (401, AuthError, 1)],
)
def test_a_lago_call_classifies_a_non_json_error_by_its_status(
    status: int, error_type: type[Exception], requests_made: int
) -> None:
    seen: list[httpx.Request] = []

    def page(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            status, headers={"retry-after": "3", "content-type": "text/html"}, text="<html>error</html>"
        )

    lago = lago_client(page)
    with pytest.raises(error_type) as raised:
        lago.find_event("txn-1")
    assert getattr(raised.value, "status", None) == status
    if status == 429:
        assert isinstance(raised.value, RateLimitedError) and raised.value.retry_after == 3.0
    assert len(seen) == requests_made  # README "Retries": 401 is not retried


# -- Secrets --------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["abc-token\u00a0", "\u00a0abc-token"])
def test_a_token_with_a_non_breaking_space_pasted_with_it_is_refused(token: str) -> None:
    # README "Secrets": "a `…` or a non-breaking space pasted with it ... is refused when the client is made".
    with pytest.raises(ConfigurationError, match="character"):
        Togai(token, base_url="http://togai.local")


def test_a_token_with_a_line_break_inside_is_refused_by_position_only() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Togai("secret\nvalue", base_url="http://togai.local")
    assert "character 7" in str(raised.value) and "secret" not in str(raised.value)


def test_credentials_in_a_base_url_are_refused_without_repeating_them() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Lago(base_url="https://user:hunter2@lago.example.com")
    assert "hunter2" not in str(raised.value)


# -- Command line ---------------------------------------------------------------------------------


def test_cli_refuses_a_token_with_a_stray_character_with_exit_64(
    mock: Mock, run_cli: RunCli, tmp_path: Path
) -> None:
    events = write_jsonl(tmp_path / "usage.jsonl", [togai_event(1)])
    done = run_cli("ingest", "togai", str(events), "--token", "secret…value", "--no-progress")
    assert done.code == 64
    assert "secret" not in done.out + done.err
    assert mock.events("togai") == []


def test_cli_batch_events_above_the_provider_limit_is_a_usage_error(
    mock: Mock, run_cli: RunCli, tmp_path: Path
) -> None:
    events = write_jsonl(tmp_path / "usage.jsonl", [togai_event(1)])
    done = run_cli("ingest", "togai", str(events), "--batch-events", "501", "--no-progress")
    assert done.code == 64 and "500" in done.err


def test_cli_an_integer_beyond_64_bits_makes_its_line_invalid_naming_the_field(
    mock: Mock, run_cli: RunCli, tmp_path: Path
) -> None:
    lines = [
        '{"external_subscription_id":"s","code":"c","timestamp":1714558530,"properties":{"count":18446744073709551617}}',
        '{"external_subscription_id":"s","code":"c","timestamp":1714558531,"properties":{"count":18446744073709551615}}',
    ]
    events = write_jsonl(tmp_path / "usage.jsonl", lines)
    report = tmp_path / "report.json"
    done = run_cli("ingest", "lago", str(events), "--report", str(report), "--no-progress")
    assert done.code == 1  # README: "some lines were invalid or rejected, and nothing failed"
    problems = json.loads(report.read_text())["problems"]
    assert [p["line"] for p in problems] == [1]
    assert problems[0]["reason"].startswith(
        "properties.count: integer 18446744073709551617 does not fit in 64 bits"
    )
