"""Items 6 and 15: rejections name the field and the rule in words, in text that stays short."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from cli.support import lago_event, togai_event

from billing_events import Lago, Togai, read_dead_letters

TOKEN = "text-test-token-123456"
FIVE_MB = 5 * 1024 * 1024
SHORT = 1200  # a reason, a log line or an exception message stays well under this


def offline(client_type: type[Togai] | type[Lago], **options: object) -> Togai | Lago:
    # Every event here is refused before sending: the address is never dialled.
    return client_type(TOKEN, base_url="http://127.0.0.1:9", **options)  # type: ignore[arg-type]


def test_a_5_mb_value_gives_a_short_reason_and_dead_letter(tmp_path: Path) -> None:
    dead = tmp_path / "dead.jsonl"
    client = offline(Togai, dead_letter_path=dead)
    outcome = client.send([togai_event(0, timestamp="9" * FIVE_MB)]).outcomes[0]
    assert outcome.status.value == "rejected"
    assert outcome.reason is not None and len(outcome.reason) < SHORT
    assert outcome.reason.startswith("event.timestamp: ")
    assert "more characters" in outcome.reason  # it says that it cut, and how much
    assert len(str(outcome.error)) < SHORT
    [letter] = read_dead_letters(dead)
    assert letter.reason is not None and len(letter.reason) < SHORT
    # The event is far beyond any request body: the letter keeps its start, and says so.
    assert dead.stat().st_size < 100_000
    assert letter.event == {} and letter.clipped is not None and "5,2" in letter.clipped


def test_a_letter_whose_event_was_too_large_to_keep_is_not_replayed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = tmp_path / "dead.jsonl"
    client = offline(Togai, dead_letter_path=dead)
    client.send([togai_event(0, timestamp="9" * FIVE_MB)])

    with caplog.at_level(logging.WARNING, logger="billing_events"):
        report = client.replay(dead)

    # Nothing is sent (a clipped copy could be billed as if it were the event), and the report says so.
    [outcome] = report
    assert outcome.status.value == "rejected" and outcome.held_back and outcome.event == {}
    assert (outcome.reason or "").startswith("not replayed: the event's JSON was")
    assert not report.ok and report.to_resend() == []
    assert any("not replayed: the event's JSON was" in record.getMessage() for record in caplog.records)


def test_track_of_a_5_mb_value_logs_a_short_warning(caplog: pytest.LogCaptureFixture) -> None:
    client = offline(Lago)
    with caplog.at_level(logging.WARNING, logger="billing_events"):
        sender = client.background()
        try:
            sender.track(lago_event(0, timestamp="z" * FIVE_MB))
        finally:
            sender.close()
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warnings, "the rejection is logged"
    assert all(len(message) < SHORT for message in warnings)
    assert any("event.timestamp" in message for message in warnings)


@pytest.mark.parametrize(
    ("value", "words"),
    [(float("nan"), "NaN is not a JSON number"), (float("inf"), "Infinity is not a JSON number")],
)
@pytest.mark.parametrize("validate", [True, False], ids=["checked", "unchecked"])
def test_nan_and_infinity_name_their_property(value: float, words: str, validate: bool) -> None:
    outcome = offline(Lago, validate=validate).send([lago_event(0, properties={"ratio": value})]).outcomes[0]
    assert outcome.status.value == "rejected"  # never sent as a silent null
    assert outcome.reason is not None and outcome.reason.startswith(f"event.properties.ratio: {words}")


@pytest.mark.parametrize("validate", [True, False], ids=["checked", "unchecked"])
@pytest.mark.parametrize("value", [float("nan"), float("-inf")])
def test_nan_and_infinity_never_reach_togai(value: float, validate: bool) -> None:
    # Togai's spec admits null nowhere, so its check alone refuses them; without the check, the JSON is searched.
    events = [
        togai_event(0, dimensions={"region": value}),
        togai_event(1, attributes=[{"name": "calls", "value": value}]),
    ]
    for outcome, field in zip(
        offline(Togai, validate=validate).send(events),
        ["dimensions.region", "attributes[0].value"],
        strict=True,
    ):
        assert outcome.status.value == "rejected"
        assert outcome.reason is not None and outcome.reason.startswith(f"event.{field}: ")
        assert "not a JSON number" in outcome.reason


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (dt.datetime(2024, 5, 1, tzinfo=dt.UTC), "a datetime is not JSON data"),
        (2**64, "outside the 64-bit range"),
        ("ab\ud800", "lone surrogate"),
    ],
)
def test_values_json_cannot_carry_name_their_field(value: object, words: str) -> None:
    assert_named(value, words, validate=True)


@pytest.mark.parametrize(
    ("value", "words"), [(2**64, "outside the 64-bit range"), ("ab\ud800", "lone surrogate")]
)
def test_without_validation_too(value: object, words: str) -> None:
    # validate=False leaves the spec to the provider, but a value JSON cannot carry never goes out.
    assert_named(value, words, validate=False)


def assert_named(value: object, words: str, *, validate: bool) -> None:
    outcome = offline(Lago, validate=validate).send([lago_event(0, properties={"when": value})]).outcomes[0]
    assert outcome.status.value == "rejected"
    assert outcome.reason is not None and outcome.reason.startswith("event.properties.when: ")
    assert words in outcome.reason


def test_a_togai_timestamp_without_offset_says_so_in_words() -> None:
    outcome = offline(Togai).send([togai_event(0, timestamp="2024-05-01T12:00:00")]).outcomes[0]
    assert outcome.reason is not None and outcome.reason.startswith("event.timestamp: missing UTC offset")
    assert "[0-9]" not in outcome.reason  # the rule in words, not the spec's regular expression


@pytest.mark.parametrize(
    ("client_type", "event", "field"),
    [
        (Togai, togai_event(0, accountId=5), "event.accountId"),
        (Togai, togai_event(0, attributes=[{"name": "calls", "value": "many"}]), "event.attributes[0].value"),
        (Lago, lago_event(0, timestamp="yesterday"), "event.timestamp"),
        (Lago, {"code": "api_calls"}, "event.external_subscription_id"),
    ],
)
def test_every_rejection_names_the_field_and_the_rule(
    client_type: type[Togai] | type[Lago], event: dict[str, object], field: str
) -> None:
    outcome = offline(client_type).send([event]).outcomes[0]
    assert outcome.reason is not None
    name, _, rule = outcome.reason.partition(": ")
    assert name == field
    assert rule.startswith(("must ", "is required"))
    assert "schemas listed" not in rule and "[0-9]" not in rule
