"""Lago: ``POST /events/batch``, up to 100 events, all-or-nothing with index-keyed errors."""

from __future__ import annotations

from typing import ClassVar

import httpx

from lago_api.models import ApiErrorUnprocessableEntity, EventInputObject, FieldErrors, ValidationErrorDetails

from ..errors import RejectedError
from ..outcomes import OutcomeStatus
from .base import Pending, ProviderRules, Settled, Verdict, split

ALREADY_STORED = "value_already_exist"


class LagoRules(ProviderRules):
    name: ClassVar[str] = "lago"
    key_field: ClassVar[str] = "transaction_id"
    event_definition: ClassVar[str] = "EventInputObject"
    batch_path: ClassVar[str] = "/events/batch"
    model_types: ClassVar[tuple[type, ...]] = (EventInputObject,)

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
        self, batch: list[Pending], by_index: dict[int, dict[str, list[str]]], rid: str | None
    ) -> Verdict:
        verdict = Verdict()
        remaining: list[Pending] = []
        for index, pending in enumerate(batch):
            fields = by_index.get(index)
            if fields is None:
                remaining.append(pending)
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


def _error_details(response: httpx.Response) -> ValidationErrorDetails | str | None:
    try:
        return ApiErrorUnprocessableEntity.from_dict(response.json()).error_details
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _codes(errors: ValidationErrorDetails | FieldErrors) -> dict[str, list[str]]:
    codes: dict[str, list[str]] = {}
    for field, value in errors.additional_properties.items():
        codes[field] = [str(code) for code in value] if isinstance(value, list) else [str(value)]
    return codes


def _by_index(details: ValidationErrorDetails, size: int) -> dict[int, dict[str, list[str]]] | None:
    """Errors keyed by event index, or None when the keys are not all indexes of this batch."""
    by_index: dict[int, dict[str, list[str]]] = {}
    for key, value in details.additional_properties.items():
        if not key.isdigit() or int(key) >= size or not isinstance(value, FieldErrors):
            return None
        by_index[int(key)] = _codes(value)
    return by_index
