"""What every provider shares: event preparation, chunking, and status handling."""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import resources
from typing import Any, ClassVar, NamedTuple, NoReturn

import attrs
import httpx
import jsonschema_rs
import orjson

from .. import _constants as C
from ..errors import (
    APIError,
    AuthError,
    BillingEventsError,
    InvalidEventError,
    RateLimitedError,
    ServerError,
)
from ..outcomes import Outcome, OutcomeStatus
from ..retry import retry_after_seconds
from ..text import field_path, not_json, nul_in, rule_in_words, shorten, show


class Pending:
    """An accepted event on its way: its serialized JSON, and its key once somebody needs it.

    A background queue keeps only the payload bytes; the key and the dict are
    read back from the JSON when an outcome is built.
    """

    __slots__ = ("_event", "_key", "attempts", "delivered", "key_field", "payload", "seq", "unsure")

    def __init__(self, key: str | None, payload: bytes, key_field: str = "", seq: int = 0) -> None:
        self._key = key
        self.payload = payload
        self.key_field = key_field
        self._event: dict[str, Any] | None = None
        self.seq = seq
        self.attempts = 0
        # Attempts whose request may have been stored (no answer, a 5xx, an unreadable 2xx): when
        # retries run out, such an event is ``unknown``, never ``failed``.
        self.unsure = 0
        self.delivered = False

    @property
    def key(self) -> str:
        if self._key is None:
            self._key = _key_of(self.payload, self.key_field)
            if self._key is None:
                self._key = _printable(self.event.get(self.key_field)) or ""
        return self._key

    @property
    def maybe_stored(self) -> bool:
        return self.unsure > 0

    @property
    def event(self) -> dict[str, Any]:
        """The event as sent, read back from its JSON."""
        if self._event is None:
            self._event = orjson.loads(self.payload)
        return self._event


class Settled:
    """How one event ended; turned into an ``Outcome`` only when somebody will look at it."""

    __slots__ = ("error", "pending", "reason", "since", "status")

    def __init__(
        self,
        pending: Pending,
        status: OutcomeStatus,
        reason: str | None = None,
        error: BillingEventsError | None = None,
        since: str | None = None,
    ) -> None:
        self.pending = pending
        self.status = status
        # An unknown event's first unknown moment, when an earlier send made it so (``Outcome.unsure_since``).
        self.since = since
        # A server's message can be as long as its answer: keep what a reader needs.
        self.reason = (
            reason
            if reason is None or len(reason) <= C.MAX_REASON_CHARS
            else shorten(reason, C.MAX_REASON_CHARS)
        )
        self.error = error

    def outcome(self) -> Outcome:
        pending = self.pending
        return Outcome(
            key=pending.key,
            status=self.status,
            event=pending.event,
            reason=self.reason,
            attempts=pending.attempts,
            error=self.error,
            unsure_since=self.since,
        )


def _key_of(payload: bytes, key_field: str) -> str | None:
    """The key of a payload that starts with it (every key the overlay assigns), without parsing the rest."""
    prefix = b'{"' + key_field.encode() + b'":"'
    if not payload.startswith(prefix):
        return None
    end = payload.find(b'"', len(prefix))
    raw = payload[len(prefix) : end]
    if end < 0 or b"\\" in raw:
        return None  # an escaped character: let the JSON parser read it
    return raw.decode()


def settle_unsent(
    pendings: Iterable[Pending], why: str, error: BillingEventsError | None = None
) -> list[Settled]:
    """Settle events that will not be tried again: ``unknown`` if an attempt may have stored them, else ``failed``."""
    settled = []
    for pending in pendings:
        if pending.maybe_stored:
            reason = f"{why}; an attempt may have been stored, a replay is safe"
            settled.append(Settled(pending, OutcomeStatus.UNKNOWN, reason, error))
        else:
            settled.append(Settled(pending, OutcomeStatus.FAILED, f"{why}; never stored", error))
    return settled


def delivered_outcome(pending: Pending) -> Outcome:
    return Outcome(
        key=pending.key, status=OutcomeStatus.DELIVERED, event=pending.event, attempts=pending.attempts
    )


@attrs.define
class Verdict:
    """How one response settles the events of the request that caused it."""

    delivered: list[Pending] = attrs.Factory(list)
    settled: list[Settled] = attrs.Factory(list)
    resend_now: list[list[Pending]] = attrs.Factory(list)
    retry_later: list[Pending] = attrs.Factory(list)
    error: BillingEventsError | None = None
    retry_after: float | None = None
    # The answer proves the retry_later events were not stored (a 429 refuses before any processing).
    unstored: bool = False
    # Some events of the request may be stored (a 207), so resend_now does not prove they were not.
    partial: bool = False


@attrs.define
class AttemptResult:
    """What one attempt leaves for the next: the events to retry after a wait (the rest is recorded)."""

    retry_later: list[Pending] = attrs.Factory(list)
    error: BillingEventsError | None = None
    retry_after: float | None = None


class Encoded(NamedTuple):
    """One accepted event: its key and JSON, the dict it came from, and what the overlay filled in."""

    key: str
    payload: bytes
    data: dict[str, Any]
    keyed: bool
    """The caller gave the key (only such keys can repeat)."""
    stamped: bool
    """The overlay filled in the timestamp."""


def _reseed_keys() -> None:
    """A random per-process prefix and a counter: unique keys, cheap enough for the caller's thread."""
    global _key_prefix, _key_counter
    _key_prefix = os.urandom(9).hex()
    _key_counter = itertools.count(1)


_key_prefix = ""
_dumps = orjson.dumps
_PASSTHROUGH_DATETIME = orjson.OPT_PASSTHROUGH_DATETIME
_key_counter = itertools.count(1)
_reseed_keys()
# A forked child must never mint the parent's keys.
os.register_at_fork(after_in_child=_reseed_keys)


def load_validator(
    provider: str, definition: str, drop_required: str | None = None, *, many: bool = False
) -> jsonschema_rs.Validator:
    """A validator for one definition of the provider's spec; ``drop_required`` makes one field optional.

    ``many=True`` validates a list of such objects in one call.
    """
    bundle = _bundle(provider)
    if drop_required is not None:
        target = bundle["$defs"][definition]
        target["required"] = [name for name in target.get("required", []) if name != drop_required]
    reference = {"$ref": f"#/$defs/{definition}"}
    shape = {"type": "array", "items": reference} if many else reference
    schema = {"$schema": bundle["$schema"], "$defs": bundle["$defs"], **shape}
    return jsonschema_rs.validator_for(schema, validate_formats=True)


def _bundle(provider: str) -> dict[str, Any]:
    text = resources.files("billing_events").joinpath(f"schemas/{provider}.schema.json").read_text("utf-8")
    bundle: dict[str, Any] = json.loads(text)
    return bundle


def may_carry_nan(provider: str, definition: str) -> bool:
    """Whether a valid ``definition`` may hold NaN or Infinity somewhere: a null, a number or any value.

    The validator reads NaN and Infinity as null (and a float is a number); where the spec admits
    neither null nor numbers, an event it accepts holds no NaN, and its JSON needs no search for
    one. Conservative: a construct this does not read (``not``, ``if``, patterns of properties,
    ...) counts as admitting them.
    """
    definitions = _bundle(provider)["$defs"]
    seen: set[str] = set()

    def admits(schema: object) -> bool:
        if not isinstance(schema, dict):
            return schema is not False
        if "$ref" in schema:
            name = str(schema["$ref"]).rpartition("/")[2]
            if name in seen:
                return False  # already being read higher up
            seen.add(name)
            return name not in definitions or admits(definitions[name])
        if any(word in schema for word in ("not", "if", "patternProperties", "dependentSchemas")):
            return True
        branches = [schema[word] for word in ("anyOf", "oneOf", "allOf") if word in schema]
        if (
            {"null", "number"} & set(_types(schema))
            or None in schema.get("enum", ())
            or schema.get("const", 0) is None
        ):
            return True
        if not _types(schema) and not branches and "enum" not in schema and "const" not in schema:
            return True  # any value, null among them
        if "prefixItems" in schema:
            return True
        children = list(schema.get("properties", {}).values())
        if "array" in _types(schema):
            children.append(schema.get("items", True))
        if "object" in _types(schema):
            children.append(schema.get("additionalProperties", True))
        return any(map(admits, children)) or any(admits(branch) for group in branches for branch in group)

    return admits({"$ref": f"#/$defs/{definition}"})


def _types(schema: dict[str, Any]) -> list[str]:
    found = schema.get("type", [])
    return [found] if isinstance(found, str) else list(found)


def _described(error: jsonschema_rs.ValidationError) -> tuple[str, str]:
    """A spec violation as (field path, rule in words), both short whatever the value."""
    path: list[str | int] = list(error.instance_path)
    kind = error.kind
    if getattr(kind, "name", "") == "required":
        return field_path("event", [*path, str(getattr(kind, "property", "?"))]), "is required"
    words = rule_in_words(kind, error.instance)
    return field_path("event", path), words or shorten(error.message, C.MAX_REASON_CHARS)


def _printable(key: object) -> str | None:
    """A key as a report names it: a text as it is; any other value shown short (never its whole repr)."""
    return key if isinstance(key, str) or key is None else show(key)


def request_id(response: httpx.Response) -> str | None:
    """The server's request id, cut short: it goes into errors, reasons and every log record of the call."""
    value: str | None = response.headers.get("x-request-id") or response.headers.get("x-amzn-requestid")
    return shorten(value, C.MAX_REQUEST_ID_CHARS) if value else value


class ProviderRules:
    """Base of the per-provider modules. Subclasses set the class attributes and ``_refused``."""

    name: ClassVar[str]
    key_field: ClassVar[str]
    event_definition: ClassVar[str]
    batch_path: ClassVar[str]
    batch_key: ClassVar[bytes] = b"events"
    model_types: ClassVar[tuple[type, ...]] = ()
    # A field the overlay fills when it is missing (Lago's timestamp), or None.
    stamp_field: ClassVar[str | None] = None
    # Whether one request may not carry the same key twice, even for different events.
    unique_keys_per_batch: ClassVar[bool] = False
    # Why the provider cannot store text holding U+0000, or None when it can (see ``_refuse_nul``).
    nul_refused: ClassVar[str | None] = None

    def __init__(self, max_batch_events: int, max_batch_bytes: int, validate: bool = True) -> None:
        self.check_events = validate
        self.max_batch_events = max_batch_events
        self.max_batch_bytes = max_batch_bytes
        self._validator = load_validator(self.name, self.event_definition)
        self._keyless_validator = load_validator(
            self.name, self.event_definition, drop_required=self.key_field
        )
        self._group_validator = load_validator(
            self.name, self.event_definition, drop_required=self.key_field, many=True
        )
        # NaN and Infinity would go out as null: search the JSON for them unless the spec check
        # already rules them out (this spec admits no null and no number anywhere).
        self._scan_for_nan = not validate or may_carry_nan(self.name, self.event_definition)
        self._prefix = b'{"' + self.batch_key + b'":['
        # The pieces spliced in front of a serialized event: the minted key, the stamp, or both.
        self._key_head = b'{"' + self.key_field.encode() + b'":"'
        stamp_name = (self.stamp_field or "").encode()
        self._stamp_head = b'{"' + stamp_name + b'":"'
        self._key_stamp = b'","' + stamp_name + b'":"'
        self.envelope_bytes = len(self._prefix) + 2
        self._max_payload = max_batch_bytes - self.envelope_bytes

    # -- preparing events -------------------------------------------------

    def as_dict(self, event: object) -> dict[str, Any]:
        """The event as a dict; a plain dict is used as it is, never modified."""
        if type(event) is dict:
            return event
        if isinstance(event, self.model_types):
            converted: dict[str, Any] = event.to_dict()  # type: ignore[attr-defined]
            return converted
        if isinstance(event, Mapping):
            return dict(event)
        raise InvalidEventError(
            "event", f"must be a mapping or a {self.name}_api model, got {type(event).__name__}"
        )

    def all_valid(self, events: list[object]) -> bool:
        """Whether every event of ``events`` is a dict the spec accepts, in one schema call.

        One call for many events costs less than one per event. It checks each event as ``encode_parts``
        would (an event with its key is judged by the rules of one without, plus the key's own rules);
        False says only that some event needs its own check, which then names the field and rule.
        """
        if not self.check_events:
            return False
        try:
            return bool(self._group_validator.is_valid(events))
        except (ValueError, TypeError):
            return False

    def problem(self, event: Mapping[str, Any], *, keyed: bool = True) -> tuple[str, str] | None:
        """The first spec rule the event breaks, as (field, rule); None when it is valid.

        ``keyed=False`` checks an event whose key the overlay will add.
        """
        validator = self._validator if keyed else self._keyless_validator
        try:
            if validator.is_valid(event):
                return None
            error = next(iter(validator.iter_errors(event)))
        except (ValueError, TypeError) as exc:
            # A value JSON cannot carry (a set, a datetime, an object): name it and its field.
            return not_json(event) or ("event", f"is not JSON data: {shorten(str(exc))}")
        # The validator reads NaN and Infinity as null: name them for what they are.
        return not_json(event) or _described(error)

    def validate(self, event: object) -> dict[str, Any]:
        """The event as a dict; raise InvalidEventError naming the field and rule it breaks.

        The checks are those of a send: the spec (with the key optional, as the overlay assigns one),
        then the JSON form (NaN, a Decimal, a set) and the size of one request. Nothing is kept.
        """
        data = self.as_dict(event)
        given = data.get(self.key_field)
        try:
            if not self.check_events:
                # A client made with check_events=False skips the spec when it sends; validate() is asked for it.
                spec = self._without_nulls(data)
                failure = self.problem(spec, keyed=given is not None)
                if failure is not None:
                    raise InvalidEventError(*failure, key=_printable(given), event=data)
            self.encode_parts(data)
        except InvalidEventError as exc:
            if given is not None:
                raise
            # Without the key that a send would have minted for it: validate() keys nothing.
            raise InvalidEventError(exc.field, exc.rule, key=None, event=data) from None
        return data

    def prepare(self, event: object, seq: int = 0) -> Pending:
        """Key, validate and serialize one event; raise InvalidEventError if it breaks the spec."""
        key, payload = self.encode(event)
        # The dict is not kept: it is read back from the payload only if somebody asks for it.
        return Pending(key, payload, seq=seq)

    def encode(self, event: object) -> tuple[str, bytes]:
        """The event's key and its JSON; raise InvalidEventError if it breaks the spec."""
        encoded = self.encode_parts(event)
        return encoded[0], encoded[1]

    def encode_event(self, event: object) -> Encoded:
        """Key, stamp, validate and serialize one event; raise InvalidEventError if it breaks the spec.

        The caller's dict is never copied or changed: a key (and, for Lago, a timestamp) that the
        overlay assigns is spliced into the serialized JSON (neither needs escaping). Both are fixed
        here, once: retries, replays and re-sends carry the same ones.
        """
        return Encoded._make(self.encode_parts(event))

    def encode_parts(
        self, event: object, *, checked: bool = False
    ) -> tuple[str, bytes, dict[str, Any], bool, bool]:
        """``encode_event`` as a plain tuple (the hot path: no named tuple per event).

        ``checked=True``: ``all_valid`` accepted the event, so it is not checked again unless the overlay
        changed it (a null key or stamp left out).
        """
        data = event if type(event) is dict else self.as_dict(event)
        key_field = self.key_field
        key = data.get(key_field)
        keyed = key is not None
        stamp_field = self.stamp_field
        stamp = stamp_field is not None and data.get(stamp_field) is None
        if (not keyed and key_field in data) or (stamp and stamp_field in data):
            data = self._without_nulls(data)
        minted = b""
        if not keyed:
            key = f"{_key_prefix}-{next(_key_counter)}"
            minted = key.encode()
        if self.check_events and not (checked and data is event):
            validator = self._validator if keyed else self._keyless_validator
            try:
                valid = validator.is_valid(data)
            except (ValueError, TypeError):
                valid = False
            if not valid:
                self._refuse(data, key, keyed)
        try:
            # OPT_PASSTHROUGH_DATETIME: a datetime is not JSON data; it is refused by name, never guessed.
            body = _dumps(data, option=_PASSTHROUGH_DATETIME)
        except (TypeError, ValueError) as exc:
            raise self._unencodable(data, key, str(exc)) from None
        # bytes.find, not ``in``: on Python 3.11 ``in`` costs about 2,700 instructions on a 156-byte event,
        # find about 1,500 (callgrind); each search runs once per event.
        if self._scan_for_nan and body.find(b"null") >= 0 and not_json(data) is not None:
            raise self._unencodable(data, key, "")  # NaN and Infinity would go out as null
        if self.nul_refused is not None and body.find(b"\\u0000") >= 0:
            self._refuse_nul(data, key)
        if keyed and not stamp:
            # orjson's result keeps its over-sized buffer; an exact copy lets that buffer be reused
            # at once, which keeps a long queue of payloads from touching fresh memory on every call.
            payload = bytes(memoryview(body))
        else:
            # One join; the slice drops the body's "{" (and orjson's over-sized buffer with it).
            close, rest = (b'",', body[1:]) if len(body) > 2 else (b'"}', b"")
            if stamp:
                # Lago stamps a missing timestamp with the time a request arrives, so a retry would
                # become a second event on its ClickHouse store: the stamp is ours, fixed at acceptance.
                moment = b"%.3f" % time.time()
                if keyed:
                    payload = b"".join((self._stamp_head, moment, close, rest))
                else:
                    payload = b"".join((self._key_head, minted, self._key_stamp, moment, close, rest))
            else:
                payload = b"".join((self._key_head, minted, close, rest))
        if len(payload) > self._max_payload:
            rule = f"is {len(payload)} bytes; a request body holds at most {self.max_batch_bytes}"
            raise InvalidEventError("event", rule, key=_printable(key), event=self._with_key(data, key))
        return (key if isinstance(key, str) else show(key)), payload, data, keyed, stamp

    def _without_nulls(self, data: dict[str, Any]) -> dict[str, Any]:
        """An explicit null key or stamp means "none given": leave it out, the overlay assigns one."""
        return {
            name: value
            for name, value in data.items()
            if value is not None or name not in (self.key_field, self.stamp_field)
        }

    def _refuse_nul(self, data: dict[str, Any], key: object) -> None:
        """Raise the InvalidEventError of an event holding U+0000 in some text, naming where.

        One search of the JSON finds it (orjson writes U+0000 as ``\\u0000``) for every field at once,
        which a schema could only say with a pattern on every string; the walk runs only then. (A text
        holding a backslash before ``u0000`` matches the search too: the walk finds nothing, and it goes.)
        """
        field = nul_in(data)
        if field is not None:
            rule = f"holds the character U+0000; {self.nul_refused}"
            raise InvalidEventError(field, rule, key=_printable(key), event=self._with_key(data, key))

    def _refuse(self, data: dict[str, Any], key: object, keyed: bool) -> NoReturn:
        """Raise the InvalidEventError of an event the spec refuses, naming its first broken rule."""
        failure = self.problem(data, keyed=keyed) or ("event", "breaks the spec")
        raise InvalidEventError(*failure, key=_printable(key), event=self._with_key(data, key))

    def repeat_identity(self, data: Mapping[str, Any], key: str) -> object:
        """What the provider deduplicates on, for events whose key the caller gave."""
        return key

    def _unencodable(self, data: dict[str, Any], key: object, why: str) -> InvalidEventError:
        """The error for an event JSON cannot carry as it is, naming the first such field."""
        field, rule = not_json(data) or ("event", f"is not JSON-serializable: {shorten(why)}")
        return InvalidEventError(field, rule, key=_printable(key), event=self._with_key(data, key))

    def _with_key(self, data: dict[str, Any], key: object) -> dict[str, Any]:
        """A refused event as its outcome and dead letter keep it: with its key, and Lago's stamp."""
        stamp_field = self.stamp_field
        if stamp_field is not None and data.get(stamp_field) is None:
            # A replay of the letter, once fixed, must carry one timestamp however often it is replayed.
            data = {**data, stamp_field: f"{time.time():.3f}"}
        return data if data.get(self.key_field) is not None else {self.key_field: key, **data}

    # -- batching ---------------------------------------------------------

    def fits(self, count: int, size: int, payload: bytes) -> bool:
        """Whether ``payload`` joins a batch of ``count`` events (the first always does).

        ``size`` is ``envelope_bytes`` plus each event's payload and one comma: a comma more than the
        body has, the one the next event brings.
        """
        return count == 0 or (count < self.max_batch_events and size + len(payload) <= self.max_batch_bytes)

    def chunks(self, pendings: Iterable[Pending]) -> Iterator[list[Pending]]:
        """Split into request-sized batches by count and by serialized bytes (``fits``, inlined: once an event)."""
        batch: list[Pending] = []
        envelope = self.envelope_bytes
        # ``size`` counts a comma after each event, so a body's bytes are at most one less than it.
        max_events, max_size = self.max_batch_events, self.max_batch_bytes + 1
        size = envelope
        keys: set[str] | None = set() if self.unique_keys_per_batch else None
        for pending in pendings:
            grown = size + len(pending.payload) + 1
            if batch and (len(batch) >= max_events or grown > max_size):
                yield batch
                batch, size = [], envelope
                grown = size + len(pending.payload) + 1
                if keys is not None:
                    keys.clear()
            if keys is not None:
                key = pending.key
                if key in keys:
                    yield batch
                    batch, size = [], envelope
                    grown = size + len(pending.payload) + 1
                    keys.clear()
                keys.add(key)
            batch.append(pending)
            size = grown
        if batch:
            yield batch

    def body(self, batch: Sequence[Pending]) -> bytes:
        return self._prefix + b",".join([pending.payload for pending in batch]) + b"]}"

    # -- reading answers --------------------------------------------------

    def interpret(self, batch: list[Pending], response: httpx.Response) -> Verdict:
        status = response.status_code
        if 200 <= status < 300:
            return self._accepted(batch, response)
        message = self._message(response)
        rid = request_id(response)
        if status in C.RETRYABLE_STATUSES:
            hint = retry_after_seconds(response.headers)
            error: BillingEventsError = (
                RateLimitedError(message, retry_after=hint, status=status, request_id=rid, provider=self.name)
                if status == 429
                else ServerError(message, status=status, request_id=rid, provider=self.name)
            )
            # A 429 refuses before any processing; any other status here may come after the store.
            return Verdict(retry_later=list(batch), error=error, retry_after=hint, unstored=status == 429)
        if status == 413:
            # A proxy's body limit below ours: halve and send again at once.
            if len(batch) > 1:
                return Verdict(resend_now=split(batch))
            # One event within the provider's own limits: the path refused it, not the provider. Nothing
            # stored it, and a replay once the limit is raised must send it again: failed, not rejected.
            reason = f"413 for one event within the provider's limits (a proxy's body limit?): {message}"
            error = APIError(reason, status=status, request_id=rid, provider=self.name)
            return Verdict(settled=[Settled(batch[0], OutcomeStatus.FAILED, reason, error)])
        if status in (401, 403):
            error = AuthError(message, status=status, request_id=rid, provider=self.name)
            return Verdict(
                settled=[Settled(p, OutcomeStatus.FAILED, message, error) for p in batch], error=error
            )
        refused = self._refused(batch, response, message, rid)
        if refused is not None:
            return refused
        error = APIError(f"unexpected answer: {message}", status=status, request_id=rid, provider=self.name)
        return Verdict(
            settled=[Settled(p, OutcomeStatus.FAILED, str(error), error) for p in batch], error=error
        )

    def _accepted(self, batch: list[Pending], response: httpx.Response) -> Verdict:
        """A 2xx: delivered if its body is the provider's answer to this batch, else like a lost answer."""
        problem = self._unreadable(batch, response)
        if problem is None:
            return Verdict(delivered=list(batch))
        return self.unreadable(batch, response, problem)

    def _unreadable(self, batch: list[Pending], response: httpx.Response) -> str | None:
        """Why a 2xx body is not the provider's success answer to ``batch``; None when it is."""
        raise NotImplementedError

    def unreadable(self, batch: list[Pending], response: httpx.Response, problem: str) -> Verdict:
        """A 2xx that is not the provider's answer (a captive portal, a misrouted proxy): the events may or
        may not be stored, so they are sent again (same keys and timestamps, so it is safe)."""
        error = ServerError(
            f"a {response.status_code} that is not the {self.name} answer: {problem}",
            status=response.status_code,
            request_id=request_id(response),
            provider=self.name,
        )
        return Verdict(retry_later=list(batch), error=error)

    def _refused(
        self, batch: list[Pending], response: httpx.Response, message: str, rid: str | None
    ) -> Verdict | None:
        """Provider-specific 4xx handling; None for statuses it does not know."""
        raise NotImplementedError

    def _message(self, response: httpx.Response) -> str:
        """The server's message, short; a redirect names where it pointed (never followed)."""
        text = self._body_message(response)
        location = response.headers.get("location")
        if 300 <= response.status_code < 400 and location:
            text = (
                f"redirected to {shorten(location)} (not followed: a batch is only sent to base_url;"
                f" check it): {text}"
            )
        return shorten(text, C.MAX_REASON_CHARS)

    def _body_message(self, response: httpx.Response) -> str:
        try:
            body = json_body(response)
        except ValueError:
            return response.text[:500] or response.reason_phrase
        if isinstance(body, dict):
            for field in ("message", "error"):
                if isinstance(body.get(field), str):
                    return str(body[field])
        return response.text[:500]


def json_body(response: httpx.Response) -> Any:
    """The body as JSON; ValueError when it is not JSON, whatever is wrong with it.

    orjson parses it: it bounds nesting and fails with its own error. (The standard parser recurses
    into a body of ``[[[[...`` until a RecursionError, which Python 3.11 can survive in a damaged
    state: a later ``ast`` call fails with a recursion depth mismatch.) JSON in UTF-16 or UTF-32, or
    behind a byte order mark, is decoded first, as the standard library detects it.
    """
    content = response.content
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        encoding = json.detect_encoding(content)
        if encoding == "utf-8":
            raise ValueError("the body is not JSON") from None
    try:
        return orjson.loads(content.decode(encoding))
    except (orjson.JSONDecodeError, UnicodeDecodeError):
        raise ValueError("the body is not JSON") from None


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one."""
    try:
        body = json_body(response)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def split(batch: list[Pending]) -> list[list[Pending]]:
    """Halve a batch the server found too large; the halves go out at once."""
    middle = len(batch) // 2
    return [batch[:middle], batch[middle:]]
