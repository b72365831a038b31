"""Togai: ``POST /ingestBatch``, up to 500 events; a 207 is narrowed down to each event's own answer."""

from __future__ import annotations

from typing import ClassVar

import httpx

from togai_api.models import Event, IngestEventResponse
from togai_api.types import Unset

from ..errors import RejectedError
from ..outcomes import OutcomeStatus
from ..text import shorten
from .base import Pending, ProviderRules, Settled, Verdict, json_body, json_object, request_id, split


class TogaiRules(ProviderRules):
    name: ClassVar[str] = "togai"
    key_field: ClassVar[str] = "id"
    event_definition: ClassVar[str] = "Event"
    batch_path: ClassVar[str] = "/ingestBatch"
    model_types: ClassVar[tuple[type, ...]] = (Event,)

    def _accepted(self, batch: list[Pending], response: httpx.Response) -> Verdict:
        if response.status_code != 207:
            return super()._accepted(batch, response)
        body = json_object(response)
        if body is None:
            # Togai's 207 is its JSON answer; a page or an empty body is some proxy's, which says nothing
            # of what was stored: sent again, as any 2xx that is not Togai's answer.
            return self.unreadable(batch, response, "the body of this 207 is not a JSON object")
        rejected = _rejected_by_index(response, len(batch))
        if rejected is None:
            # Togai's 207 names no events. A repeated id is refused for 45 days, so re-sending
            # halves is safe: the stored ones come back accepted, the bad ones narrow down to one.
            if len(batch) > 1:
                return Verdict(resend_now=split(batch), partial=True)
            said = body.get("message")
            reason = "refused in a 207 partial failure" + (
                f": {shorten(said)}" if isinstance(said, str) and said else ""
            )
            error = RejectedError(reason, status=207, request_id=request_id(response), provider=self.name)
            return Verdict(settled=[Settled(batch[0], OutcomeStatus.REJECTED, reason, error)])
        verdict = Verdict()
        for index, pending in enumerate(batch):
            message = rejected.get(index)
            if message is None:
                verdict.delivered.append(pending)
            else:
                error = RejectedError(message, status=207, provider=self.name)
                verdict.settled.append(Settled(pending, OutcomeStatus.REJECTED, message, error))
        return verdict

    def _unreadable(self, batch: list[Pending], response: httpx.Response) -> str | None:
        body = json_object(response)
        if body is None:
            return "the body is not a JSON object"
        if body.get("success") is False:
            return "it says success: false"
        return None

    def _refused(
        self, batch: list[Pending], response: httpx.Response, message: str, rid: str | None
    ) -> Verdict | None:
        status = response.status_code
        if status in (400, 422) and len(batch) > 1:
            # Too large (422), or refused whole (400): halve and send again at once, so that
            # one bad event cannot take the others down with it.
            return Verdict(resend_now=split(batch))
        if status in (400, 422):
            error = RejectedError(message, status=status, request_id=rid, provider=self.name)
            return Verdict(settled=[Settled(p, OutcomeStatus.REJECTED, message, error) for p in batch])
        return None


def _rejected_by_index(response: httpx.Response, size: int) -> dict[int, str] | None:
    """Index -> message of each rejected event, read with the generated model.

    None when the detail is absent or does not fit this batch (no entry, or an index
    outside it): then nobody knows which events were kept.
    """
    try:
        parsed = IngestEventResponse.from_dict(json_body(response))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    details = parsed.details
    if isinstance(details, Unset) or isinstance(details.rejected_events, Unset):
        return None
    rejected = {entry.index: entry.message for entry in details.rejected_events}
    if not rejected or not all(isinstance(index, int) and 0 <= index < size for index in rejected):
        return None
    return rejected
