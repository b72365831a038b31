"""Lago's event rules beyond the schema: error codes per field, timestamps, and the stored EventObject."""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

import jsonschema_rs
from attrs import frozen

from billing_events.mock.schemas import is_valid, schema_errors
from billing_events.mock.stores import LagoKey
from billing_events.text import nul_in

FieldErrors = dict[str, list[str]]

# 9999-12-31T23:59:59Z: the last second an RFC 3339 date-time can spell.
MAX_TIMESTAMP = 253_402_300_799
_KIND = jsonschema_rs.ValidationErrorKind


def iso_millis(moment: datetime) -> str:
    """`2022-04-29T08:59:51.123Z`, the form Lago answers timestamps in."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_seconds(moment: datetime) -> str:
    """`2022-04-29T08:59:51Z`: Lago answers `created_at` in whole seconds (Rails' `iso8601`)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@frozen
class Reception:
    """When a request arrived, once as a time and once as Lago writes it: shared by every event of a batch."""

    at: datetime
    text: str
    # The same moment as a row's `created_at` is answered (lago-api `V1::EventSerializer`).
    created_at: str

    @classmethod
    def now(cls) -> Reception:
        moment = datetime.now(UTC)
        return cls(moment, iso_millis(moment), iso_seconds(moment))


def add_error(errors: FieldErrors, field: str, code: str) -> None:
    codes = errors.setdefault(field, [])
    if code not in codes:
        codes.append(code)


def _code_for(field: str, error: jsonschema_rs.ValidationError) -> str:
    if field == "timestamp":
        return "invalid_format"
    # The spec says "not blank" with minLength and a pattern; the server's check is Rails' `presence`, which
    # answers a blank string (empty or whitespace only) as a missing one, whichever of the two refused it.
    blank = isinstance(error.instance, str) and not error.instance.strip()
    if blank and isinstance(error.kind, _KIND.MinLength | _KIND.Pattern):
        return "value_is_mandatory"
    if isinstance(error.kind, _KIND.Pattern | _KIND.Format):
        return "invalid_format"
    return "value_is_invalid"


def field_errors(
    validator: jsonschema_rs.Validator, event: object, errors: FieldErrors | None = None
) -> FieldErrors:
    """Schema violations of one event as Lago's `{field: [code, ...]}`."""
    found: FieldErrors = {} if errors is None else errors
    # is_valid is the fast path; collecting errors is several times slower and rarely needed. Both judge a
    # lone surrogate as U+FFFD: the server stores such text.
    if is_valid(validator, event):
        return found
    for error in schema_errors(validator, event):
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
    """Unix seconds as the server reads them: the number's text as a decimal, exactly (lago-api's
    ``Time.zone.at(BigDecimal(params[:timestamp].to_s))``), so 30.123 is 30.123 and not the double below it."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # A JSON number with decimals is a Float in Rails; its text (to_s) is the shortest that reads back.
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, str) and value.replace(".", "", 1).isdigit() and value.isascii():
        return Decimal(value)
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


# Ruby's loose String#to_d: the number a string starts with (underscores between digits allowed), else 0.
_LEADING_NUMBER = re.compile(
    r"\s*([-+]?)([0-9]+(?:_[0-9]+)*)?(?:\.([0-9]+(?:_[0-9]+)*))?(?:[eE]([-+]?[0-9]+))?"
)
# The column is decimal(40, 15): 15 places, and at most 25 digits before the point.
_PRECISE_PLACES = Decimal(1).scaleb(-15)
PRECISE_LIMIT = Decimal(10) ** 25
# Every digit such a value can have, and room for the rounding digit.
_PRECISE_DIGITS = 50


def precise_decimal(value: object) -> Decimal | None:
    """`precise_total_amount_cents` cast as the server casts it: a scalar becomes a decimal, never an error.

    A number is itself; a string is the number it starts with, or 0; a boolean is 0. Rounded to 15 places.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        number = Decimal(0)
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        # The server cannot store an infinity or NaN: count them as out of range.
        number = Decimal(repr(value)) if math.isfinite(value) else Decimal("Infinity")
    else:
        match = _LEADING_NUMBER.match(str(value))
        assert match is not None  # every part of the pattern is optional
        sign, whole, fraction, exponent = match.groups()
        if whole is None and fraction is None:
            number = Decimal(0)
        else:
            digits = f"{sign}{(whole or '0').replace('_', '')}.{(fraction or '0').replace('_', '')}"
            # An exponent far beyond the column's range is out of range whatever its digits.
            shift = max(-100, min(100, int(exponent))) if exponent else 0
            number = Decimal(digits).scaleb(shift)
    if abs(number) >= PRECISE_LIMIT:
        return number
    with localcontext(prec=_PRECISE_DIGITS):
        return number.quantize(_PRECISE_PLACES, rounding=ROUND_HALF_UP)


def precise_text(value: object) -> str | None:
    """`precise_total_amount_cents` as the server answers it: the cast decimal, e.g. `"12.5"`, `"5.0"`."""
    number = precise_decimal(value)
    if number is None:
        return None
    with localcontext(prec=_PRECISE_DIGITS):
        text = format(number.normalize(), "f")
    return text if "." in text else f"{text}.0"


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
        "created_at": received.created_at,
    }


def _map_value(value: object) -> str:
    """A property value as `Map(String, String)` holds it: a string as is, anything else as its JSON text."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def raw_row(stored: dict[str, Any], organization_id: str) -> dict[str, Any]:
    """An event as `GET /events/{transaction_id}` answers it on the ClickHouse store, which reads the
    `events_raw` row (lago-api `app/models/clickhouse/events_raw.rb`): a made-up `lago_id` of organization,
    subscription, transaction and ingestion second; string property values; the "0.0" amount the writer
    sends when none was given (`app/services/events/kafka_producer_service.rb`); a non-null subscription."""
    subscription = stored.get("external_subscription_id") or ""
    ingested = int(datetime.fromisoformat(stored["created_at"]).timestamp())
    properties = stored.get("properties") or {}
    return {
        **stored,
        "lago_id": f"{organization_id}-{subscription}-{stored['transaction_id']}-{ingested}",
        "external_subscription_id": subscription,
        "precise_total_amount_cents": stored.get("precise_total_amount_cents") or "0.0",
        "properties": {str(name): _map_value(value) for name, value in properties.items()},
    }


# The fields of an event the server keeps (it drops unknown keys unread).
KEPT_FIELDS = (
    "transaction_id",
    "external_subscription_id",
    "code",
    "timestamp",
    "precise_total_amount_cents",
    "properties",
)


def nul_field(event: dict[str, Any]) -> str | None:
    """The kept field of ``event`` whose text (a key or a value, however deep) holds U+0000."""
    for name in KEPT_FIELDS:
        if name in event and nul_in(event[name]) is not None:
            return name
    return None


def judge_event(
    validator: jsonschema_rs.Validator | None, event: object, received: Reception, *, postgres: bool = True
) -> tuple[FieldErrors, dict[str, Any] | None]:
    """Field errors of one event and, when it has none, the EventObject to store.

    ``postgres``: the event goes to the Postgres store, whose text and jsonb columns cannot hold U+0000.
    """
    if not isinstance(event, dict):
        return {"event": ["value_is_invalid"]}, None
    timestamp = timestamp_text(event, received)
    if timestamp is None:
        # The server reads the timestamp before any other check, and its failure is the event's one error.
        return {"timestamp": ["invalid_format"]}, None
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
    amount = precise_decimal(event.get("precise_total_amount_cents"))
    if amount is not None and abs(amount) >= PRECISE_LIMIT:
        # The server's decimal(40, 15) column overflows (a 500 on its Postgres store): refused here instead.
        add_error(errors, "precise_total_amount_cents", "value_is_invalid")
    nul = nul_field(event) if postgres else None
    if nul is not None:
        # Postgres text and jsonb cannot hold U+0000 (a 500 on the server's Postgres store): refused here instead.
        add_error(errors, nul, "value_is_invalid")
    if errors:
        return errors, None
    return errors, stored_event(event, timestamp, received)
