"""Lago: ``POST /events/batch``, up to 100 events, all-or-nothing with index-keyed errors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from lago_api.models import ApiErrorUnprocessableEntity, EventInputObject, FieldErrors, ValidationErrorDetails

from ..errors import RejectedError
from ..outcomes import OutcomeStatus
from .base import Pending, ProviderRules, Settled, Verdict, json_body, json_object, split

ALREADY_STORED = "value_already_exist"
# What a batch's 422 says of one event: field -> codes, or the server's message.
IndexErrors = dict[str, list[str]] | str


class LagoRules(ProviderRules):
    name: ClassVar[str] = "lago"
    key_field: ClassVar[str] = "transaction_id"
    event_definition: ClassVar[str] = "EventInputObject"
    batch_path: ClassVar[str] = "/events/batch"
    model_types: ClassVar[tuple[type, ...]] = (EventInputObject,)
    stamp_field: ClassVar[str | None] = "timestamp"
    # The Postgres store matches a batch's inserted rows by transaction_id alone: the same id twice in
    # one batch, even for two subscriptions, looks like a duplicate and rolls the whole batch back.
    unique_keys_per_batch: ClassVar[bool] = True
    # Postgres text and jsonb cannot hold it, lago-api rescues neither error: the whole request fails with a
    # 500, retried in vain, and the good events of its batch with it. (An overlay rule, README "Specs".)
    nul_refused: ClassVar[str | None] = (
        "Lago's Postgres store cannot save it, and the whole request would fail with a 500"
    )

    def repeat_identity(self, data: Mapping[str, Any], key: str) -> object:
        return (data.get("external_subscription_id"), key)

    def _unreadable(self, batch: list[Pending], response: httpx.Response) -> str | None:
        if _echoes_in_order(response.content, [pending.key for pending in batch]):
            return None
        body = json_object(response)
        echoed = body.get("events") if body is not None else None
        if not isinstance(echoed, list):
            return "the body is not an object with an events list"
        ids = [item.get(self.key_field) if isinstance(item, dict) else None for item in echoed]
        keys = [pending.key for pending in batch]
        # Lago echoes the batch in its order: compare as sent first, sorted only when that differs.
        if ids != keys and sorted(map(str, ids)) != sorted(keys):
            return f"it echoes {len(ids)} events that are not the {len(batch)} sent"
        return None

    def _refused(
        self, batch: list[Pending], response: httpx.Response, message: str, rid: str | None
    ) -> Verdict | None:
        status = response.status_code
        if status == 400 and len(batch) > 1:
            # Refused whole: halve and send again at once, so that the refusal can be pinned down.
            return Verdict(resend_now=split(batch))
        if status == 400:
            error = RejectedError(message, status=status, request_id=rid, provider=self.name)
            return Verdict(settled=[Settled(p, OutcomeStatus.REJECTED, message, error) for p in batch])
        if status != 422:
            return None
        details = _error_details(response)
        if isinstance(details, ValidationErrorDetails) and details.additional_keys:
            by_index = _by_index(details, len(batch))
            if by_index is not None:
                return self._settle_indexed(batch, by_index, rid)
            if details.additional_keys == ["events"] and len(batch) > 1:
                # The server's batch limit is lower than ours (too_many_events): halve at once.
                return Verdict(resend_now=split(batch))
            if len(batch) == 1:
                return self._settle_indexed(batch, {0: _codes(details)}, rid)
        if len(batch) > 1:
            # Errors not keyed by index cannot be attributed: halve until they can.
            return Verdict(resend_now=split(batch))
        reason = details if isinstance(details, str) else message
        error = RejectedError(reason, status=status, request_id=rid, provider=self.name)
        return Verdict(settled=[Settled(batch[0], OutcomeStatus.REJECTED, reason, error)])

    def _settle_indexed(
        self, batch: list[Pending], by_index: dict[int, IndexErrors], rid: str | None
    ) -> Verdict:
        verdict = Verdict()
        remaining: list[Pending] = []
        repeated = _repeated_keys(batch) if len(batch) > 1 else set()
        for index, pending in enumerate(batch):
            fields = by_index.get(index)
            if fields is None:
                remaining.append(pending)
            elif isinstance(fields, str):
                # The server's own message for this event, e.g. a billable-metric expression that failed.
                error = RejectedError(fields, status=422, request_id=rid, provider=self.name)
                verdict.settled.append(Settled(pending, OutcomeStatus.REJECTED, fields, error))
            elif ALREADY_STORED in fields.get(self.key_field, ()) and pending.key in repeated:
                # Another event of this batch carries the same id, so this may be the server
                # matching rows by id alone: only the event on its own can tell.
                verdict.resend_now.append([pending])
            elif ALREADY_STORED in fields.get(self.key_field, ()):
                verdict.settled.append(Settled(pending, OutcomeStatus.DUPLICATE))
            else:
                reason = "; ".join(f"{field}: {', '.join(codes)}" for field, codes in sorted(fields.items()))
                error = RejectedError(reason, status=422, request_id=rid, provider=self.name)
                verdict.settled.append(Settled(pending, OutcomeStatus.REJECTED, reason, error))
        if remaining:
            # The batch was all-or-nothing: the valid rest was not stored and goes out again now.
            verdict.resend_now.append(remaining)
        return verdict


# Each echoed event's transaction_id with its quotes, as Lago writes it when it needs no escape; any
# other spelling (an escape, a space) matches as empty, so that it is counted and compares unequal.
_ECHO_IDS = re.compile(rb'"transaction_id":("[^"\\]*"|)')


def _echoes_in_order(content: bytes, keys: list[str]) -> bool:
    """Whether a 2xx body is Lago's compact echo of exactly ``keys``, in order, found without parsing it.

    Parsing the echo costs more than building the batch did; one pass of a regex finds each key where
    Lago puts it. As many matches as keys, and the same text once each key is quoted: a key holding a
    ``"`` would add quotes, an escaped or extra id an empty match, so the two match one for one. False
    only means "parse it": anything else (spaces, escapes, other order, a nested transaction_id) gets
    the full check.
    """
    stripped = content.strip()
    if not (stripped.startswith(b'{"events":[') and stripped.endswith(b"]}")):
        return False
    found = _ECHO_IDS.findall(content)
    return len(found) == len(keys) and b"".join(found) == ('"' + '""'.join(keys) + '"').encode()


def _repeated_keys(batch: list[Pending]) -> set[str]:
    seen: set[str] = set()
    repeated: set[str] = set()
    for pending in batch:
        (repeated if pending.key in seen else seen).add(pending.key)
    return repeated


def _error_details(response: httpx.Response) -> ValidationErrorDetails | str | None:
    try:
        return ApiErrorUnprocessableEntity.from_dict(json_body(response)).error_details
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _codes(errors: ValidationErrorDetails | FieldErrors) -> dict[str, list[str]]:
    codes: dict[str, list[str]] = {}
    for field, value in errors.additional_properties.items():
        codes[field] = [str(code) for code in value] if isinstance(value, list) else [str(value)]
    return codes


def _by_index(details: ValidationErrorDetails, size: int) -> dict[int, IndexErrors] | None:
    """Errors keyed by event index, or None when the keys are not all indexes of this batch.

    An index maps to field codes, or to a message (lago-api's batch service puts a failed billable-metric
    expression's message there).
    """
    by_index: dict[int, IndexErrors] = {}
    for key, value in details.additional_properties.items():
        # ASCII digits only, no longer than the batch's last index: str.isdigit() also takes "²", which
        # int() refuses, and int() of thousands of digits raises.
        if not (key.isascii() and key.isdigit() and len(key) <= len(str(size))) or int(key) >= size:
            return None
        index = int(key)
        if isinstance(value, FieldErrors):
            by_index[index] = _codes(value)
        elif isinstance(value, str):
            by_index[index] = value
        else:
            return None
    return by_index
