"""Lago's event rules beyond the schema: error codes per field, timestamps, and the stored EventObject."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import jsonschema_rs
from attrs import frozen

from billing_events.mock.stores import LagoKey

FieldErrors = dict[str, list[str]]

# 9999-12-31T23:59:59Z: the last second an RFC 3339 date-time can spell.
MAX_TIMESTAMP = 253_402_300_799
_KIND = jsonschema_rs.ValidationErrorKind


def iso_millis(moment: datetime) -> str:
    """`2022-04-29T08:59:51.123Z`, the form Lago answers timestamps in."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@frozen
class Reception:
    """When a request arrived, once as a time and once as Lago writes it: shared by every event of a batch."""

    at: datetime
    text: str

    @classmethod
    def now(cls) -> Reception:
        moment = datetime.now(UTC)
        return cls(moment, iso_millis(moment))


def add_error(errors: FieldErrors, field: str, code: str) -> None:
    codes = errors.setdefault(field, [])
    if code not in codes:
        codes.append(code)


def _code_for(field: str, error: jsonschema_rs.ValidationError) -> str:
    if field == "timestamp" or isinstance(error.kind, _KIND.Pattern | _KIND.Format):
        return "invalid_format"
    if isinstance(error.kind, _KIND.MinLength) and error.instance == "":
        return "value_is_mandatory"
    return "value_is_invalid"


def field_errors(
    validator: jsonschema_rs.Validator, event: object, errors: FieldErrors | None = None
) -> FieldErrors:
    """Schema violations of one event as Lago's `{field: [code, ...]}`."""
    found: FieldErrors = {} if errors is None else errors
    # is_valid is the fast path; collecting errors is several times slower and rarely needed.
    if validator.is_valid(event):
        return found
    for error in validator.iter_errors(event):
        kind = error.kind
        if isinstance(kind, _KIND.Required):
            add_error(found, str(kind.property), "value_is_mandatory")
        elif isinstance(kind, _KIND.AdditionalProperties):
            for name in kind.unexpected:
                add_error(found, name, "value_is_invalid")
        else:
            path = error.instance_path
            field = str(path[0]) if path else "event"
            add_error(found, field, _code_for(field, error))
    return found


def _seconds(value: object) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # repr is the shortest text that reads back as this float: what the server parses.
        return Decimal(repr(value))
    if isinstance(value, str) and value.replace(".", "", 1).isdigit() and value.isascii():
        try:
            return Decimal(value)
        except InvalidOperation:
            return None
    return None


def timestamp_text(event: dict[str, Any], received: Reception) -> str | None:
    """The event time as Lago echoes it, or None when the value is not Unix seconds Lago can read."""
    if event.get("timestamp") is None:
        return received.text
    seconds = _seconds(event["timestamp"])
    if seconds is None or not 0 <= seconds <= MAX_TIMESTAMP:
        return None
    whole = int(seconds)
    millis = int((seconds - whole) * 1000)
    moment = datetime.fromtimestamp(whole, UTC).replace(microsecond=millis * 1000)
    return iso_millis(moment)


def key_of(event: object) -> LagoKey | None:
    """(external_subscription_id, transaction_id); the server stores an event without a subscription."""
    if not isinstance(event, dict):
        return None
    subscription = event.get("external_subscription_id")
    transaction = event.get("transaction_id")
    if (subscription is None or isinstance(subscription, str)) and isinstance(transaction, str):
        return (subscription, transaction)
    return None


def precise_text(value: object) -> str | None:
    """`precise_total_amount_cents` as the server answers it: a decimal string, whichever form was sent."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        text = format(number, "f")
        return text if "." in text else f"{text}.0"
    return str(value)


def stored_event(event: dict[str, Any], timestamp: str, received: Reception) -> dict[str, Any]:
    """The EventObject Lago answers for an accepted event; processing is asynchronous, so the lago_* ids are null."""
    return {
        "lago_id": str(uuid.uuid4()),
        "transaction_id": event["transaction_id"],
        "lago_customer_id": None,
        "code": event.get("code"),
        "timestamp": timestamp,
        "lago_subscription_id": None,
        "external_subscription_id": event.get("external_subscription_id"),
        "precise_total_amount_cents": precise_text(event.get("precise_total_amount_cents")),
        # The server stores `properties || {}`: null and missing are both an empty object.
        "properties": event.get("properties") or {},
        "created_at": received.text,
    }


def judge_event(
    validator: jsonschema_rs.Validator | None, event: object, received: Reception
) -> tuple[FieldErrors, dict[str, Any] | None]:
    """Field errors of one event and, when it has none, the EventObject to store."""
    if not isinstance(event, dict):
        return {"event": ["value_is_invalid"]}, None
    errors = field_errors(validator, event) if validator is not None else {}
    if key_of(event) is None:
        # Storage needs the key, whether or not the schema checks ran.
        if not isinstance(event.get("transaction_id"), str):
            add_error(
                errors,
                "transaction_id",
                "value_is_mandatory" if "transaction_id" not in event else "value_is_invalid",
            )
        subscription = event.get("external_subscription_id")
        if subscription is not None and not isinstance(subscription, str):
            add_error(errors, "external_subscription_id", "value_is_invalid")
    timestamp = timestamp_text(event, received)
    if timestamp is None:
        add_error(errors, "timestamp", "invalid_format")
    if errors or timestamp is None:
        return errors, None
    return errors, stored_event(event, timestamp, received)
