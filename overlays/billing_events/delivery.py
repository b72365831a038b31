"""Provider-neutral delivery of one batch: attempts, immediate re-sends, retries.

``_plan`` is sans-IO: it yields the sub-batch to post next and receives the
response (or the exception). The sync and async drivers only do the I/O and the
waiting between attempts, so both follow exactly the same rules.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Generator
from typing import Any

import httpx

from . import _constants as C
from . import metrics
from ._logs import log_safely
from ._network import Progress
from ._post import AsyncBatchPoster, BatchPoster, ClientClosedError, RequestHookError
from ._transport import request_bounds
from .errors import APIError, BillingEventsError, RequestTimeoutError, TransportError
from .outcomes import OutcomeStatus
from .providers import AttemptResult, Pending, ProviderRules, Settled
from .providers.base import request_id, settle_unsent
from .retry import RetryableFailure, RetryPolicy
from .text import shorten

Reply = httpx.Response | BaseException
# Called with the events an attempt delivered, and the others it settled.
Recorder = Callable[[list[Pending], list[Settled]], None]
Plan = Generator[list[Pending], Reply, AttemptResult]
HEADERS = {"Content-Type": "application/json"}
log = logging.getLogger("billing_events.delivery")


class SenderAborted(Exception):
    """A closing sender's deadline passed before this request left: it was not sent."""


# Errors raised before a request's first byte left: the server surely never saw it.
NEVER_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
    ClientClosedError,
    RequestHookError,
    SenderAborted,
)


def _plan(rules: ProviderRules, batch: list[Pending], record: Recorder) -> Plan:
    """Post ``batch`` and its immediate re-sends; what each answer settles is recorded as it arrives, so
    an interruption (Ctrl-C, a cancellation) never loses an answer already received."""
    result = AttemptResult()
    stack = [batch]
    while stack:
        sub = stack.pop()
        for pending in sub:
            pending.attempts += 1
            pending.unsure += 1  # taken back below once the answer proves nothing was stored
        reply = yield sub
        if isinstance(reply, BaseException):
            error = transport_error(reply)
            if isinstance(reply, NEVER_SENT):
                _stored_nothing(sub)
            if isinstance(reply, httpx.HTTPError | SenderAborted):
                # No answer, or one that cannot be read (a reset, a timeout, a bad encoding): retry. Stopped by
                # a closing sender: that sender settles the events (queueing.left_behind) or its spool keeps them.
                result.retry_later.extend(sub)
                result.error = error
            else:
                record([], settle_unsent(sub, str(error), error))
            continue
        verdict = rules.interpret(sub, reply)
        if verdict.delivered or verdict.settled:
            record(verdict.delivered, [_honest(item) for item in verdict.settled])
        stack.extend(reversed(verdict.resend_now))
        if verdict.retry_later:
            if verdict.unstored:
                _stored_nothing(verdict.retry_later)
            result.retry_later.extend(verdict.retry_later)
            result.error = verdict.error
            if verdict.retry_after is not None:
                result.retry_after = max(result.retry_after or 0.0, verdict.retry_after)
        if not verdict.partial:
            for item in verdict.resend_now:
                # A refusal of the whole request (all-or-nothing, or too large) stored nothing of it.
                _stored_nothing(item)
    return result


def _honest(item: Settled) -> Settled:
    """A refusal (401, 403, an unexpected status) says this attempt stored nothing, not the earlier ones."""
    if item.status is not OutcomeStatus.FAILED:
        return item
    pending = item.pending
    pending.unsure -= 1
    if not pending.maybe_stored:
        return item
    reason = f"{item.reason}; an earlier attempt may have been stored, a replay is safe"
    return Settled(pending, OutcomeStatus.UNKNOWN, reason, item.error)


def _cut_before_sending(sub: list[Pending], progress: Progress) -> None:
    """A cancellation or Ctrl-C before a byte of the request left (waiting for the rate budget or for a
    connection, or making one): nothing was stored."""
    if progress.unsent:
        _stored_nothing(sub)


def _stored_nothing(pendings: list[Pending]) -> None:
    for pending in pendings:
        pending.unsure -= 1


def transport_error(exc: BaseException) -> BillingEventsError:
    if isinstance(exc, BillingEventsError):
        return exc
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeoutError(f"request timed out: {type(exc).__name__}")
    # The library's message can quote what the server sent (a 50 KB header line h11 refused): cut it.
    return TransportError(f"request failed: {type(exc).__name__}: {shorten(str(exc))}")


class _Delivery:
    def __init__(
        self,
        rules: ProviderRules,
        policy: RetryPolicy,
        record: Recorder,
        on_retry: Callable[[int], None],
        http_base_url: httpx.URL,
    ) -> None:
        self.rules = rules
        self.policy = policy
        self.record = record
        self.on_retry = on_retry
        self.meter = metrics.RequestMeter(rules.name, http_base_url)
        # The batch URL, absolute: httpx would otherwise parse and merge it with the base on every request.
        self.url = http_base_url.copy_with(
            raw_path=http_base_url.raw_path + rules.batch_path.lstrip("/").encode()
        )

    def _bounds(
        self, deadline: float | None, progress: Progress | None = None, stop: threading.Event | None = None
    ) -> dict[str, Any]:
        # Batches larger than the defaults get answers larger in proportion (Lago echoes the events), and
        # a refusal of many events names each of them.
        rules = self.rules
        cap = max(
            C.MAX_BATCH_ANSWER_BYTES[rules.name],
            C.ANSWER_GROWTH[rules.name] * rules.max_batch_bytes
            + C.ANSWER_BYTES_PER_EVENT * rules.max_batch_events,
        )
        error_cap = max(C.MAX_ERROR_ANSWER_BYTES, C.ERROR_ANSWER_BYTES_PER_EVENT * rules.max_batch_events)
        return request_bounds(deadline, cap, progress, error_cap, stop)

    def _failure(self, result: AttemptResult) -> RetryableFailure | None:
        """The failure to retry after an attempt (the events it settled are recorded); None when it settled all.

        The first attempt's is made before the retry loop is built: most batches need no other attempt,
        and building tenacity's loop for each cost the Lago client about 5% of its CPU. The loop gets it as
        the outcome of its own first attempt, so it waits and stops by the same rules.
        """
        if not result.retry_later:
            return None
        return RetryableFailure(result.error or TransportError("no answer"), result.retry_after)

    def _count_again(
        self,
        sub: list[Pending],
        again: RetryableFailure | None,
        progress: Progress | None,
        reply: Reply | None = None,
    ) -> None:
        """``sub`` re-sent after a wait is retried once the request may have left: not when the rate budget
        refused it, nor when its connection was never made (nothing left); also when the caller cut it
        after it left."""
        if again is None or progress is None or progress.unsent or isinstance(reply, NEVER_SENT):
            return
        self._retrying(sub, again)

    def _retrying(self, remaining: list[Pending], failure: RetryableFailure) -> None:
        """A request after a wait sent ``remaining`` again: counted here, not when the earlier attempt
        failed, so an attempt after which the retries stop counts for nothing."""
        retrying = len(remaining)
        self.on_retry(retrying)
        metrics.retried(self.rules.name, retrying)
        if log.isEnabledFor(logging.INFO):
            error = failure.cause
            log_safely(
                log.info,
                "%s: %d events sent again after a wait: %s",
                self.rules.name,
                retrying,
                error,
                extra={
                    "provider": self.rules.name,
                    "events": retrying,
                    "attempts": remaining[0].attempts,
                    "http_status": error.status if isinstance(error, APIError) else None,
                    "request_id": error.request_id if isinstance(error, APIError) else None,
                },
            )

    def _ended(
        self, sub: list[Pending], reply: Reply, progress: Progress, again: RetryableFailure | None = None
    ) -> None:
        """One request ended: metrics, and a DEBUG record (per request, never per event). ``again``: it
        re-sent ``sub`` after a wait (see ``_count_again``). Its time runs from when it left, past the
        pacer's wait (``Progress.seconds``)."""
        self._count_again(sub, again, progress, reply)
        seconds = progress.seconds()
        self.meter.ended("POST", reply, seconds)
        if log.isEnabledFor(logging.DEBUG):
            response = reply if isinstance(reply, httpx.Response) else None
            log_safely(
                log.debug,
                "%s POST %s: %s in %.1f ms, %d events",
                self.rules.name,
                self.rules.batch_path,
                f"HTTP {response.status_code}" if response is not None else type(reply).__name__,
                seconds * 1000,
                len(sub),
                extra={
                    "provider": self.rules.name,
                    "events": len(sub),
                    "attempts": sub[0].attempts if sub else 0,
                    "http_status": response.status_code if response is not None else None,
                    "request_id": request_id(response) if response is not None else None,
                },
            )

    def _give_up(self, remaining: list[Pending], exhausted: RetryableFailure, why: str) -> None:
        cause = exhausted.cause if isinstance(exhausted.cause, BillingEventsError) else None
        self.record([], settle_unsent(remaining, f"{why}: {cause}" if cause is not None else why, cause))


class SyncDelivery(_Delivery):
    def __init__(
        self,
        rules: ProviderRules,
        poster: BatchPoster,
        policy: RetryPolicy,
        record: Recorder,
        on_retry: Callable[[int], None],
    ) -> None:
        super().__init__(rules, policy, record, on_retry, poster.base_url)
        self.poster = poster

    def _post(
        self,
        sub: list[Pending],
        deadline: float | None,
        again: RetryableFailure | None = None,
        abort: threading.Event | None = None,
    ) -> Reply:
        reply: Reply
        progress = Progress()
        try:
            # ``abort`` also ends the request's wait for its rate budget: it then never leaves (BudgetTimeout).
            reply = self.poster.post(
                self.url, self.rules.body(sub), HEADERS, self._bounds(deadline, progress, abort)
            )
        except Exception as exc:
            reply = exc
        except BaseException:
            _cut_before_sending(sub, progress)
            self._count_again(sub, again, progress)
            raise
        self._ended(sub, reply, progress, again)
        return reply

    def _attempt(
        self,
        batch: list[Pending],
        deadline: float | None = None,
        abort: threading.Event | None = None,
        again: RetryableFailure | None = None,
    ) -> AttemptResult:
        """One attempt at ``batch`` (its immediate re-sends included); ``again``: the failure it retries."""
        plan = _plan(self.rules, batch, self.record)
        try:
            sub = next(plan)
            while True:
                # Checked before every request, after the plan counted it as maybe stored: no request
                # leaves after a close deadline, and the plan takes the count back (nothing was sent).
                if abort is not None and abort.is_set():
                    sub = plan.send(SenderAborted("the sender's close deadline passed first"))
                else:
                    sub = plan.send(self._post(sub, deadline, again, abort))
                again = None  # the attempt's first request carries the whole batch: counted once
        except StopIteration as done:
            result: AttemptResult = done.value
            return result

    def deliver(self, batch: list[Pending], abort: threading.Event | None = None) -> None:
        """Send one batch until every event is settled; each event is recorded exactly once.

        Once ``abort`` is set (a closing sender's deadline) no request leaves; the events this leaves
        unsettled are the sender's to settle, by what their attempts proved (``Pending.maybe_stored``).
        """
        deadline = self.policy.call_deadline()
        result = self._attempt(batch, deadline, abort)
        if not result.retry_later:
            return
        remaining = result.retry_later
        first = last = self._failure(result)
        try:
            for attempt in self.policy.retrying(deadline, abort):
                with attempt:
                    if first is not None:
                        failed, first = first, None
                        raise failed  # see _failure
                    # tenacity checks its stop only after an attempt: _attempt posts nothing once closed.
                    result = self._attempt(remaining, deadline, abort, last)
                    remaining = result.retry_later
                    if (last := self._failure(result)) is not None:
                        raise last
        except RetryableFailure as exhausted:
            if abort is not None and abort.is_set():
                return  # see the docstring
            self._give_up(remaining, exhausted, "retries exhausted")


class AsyncDelivery(_Delivery):
    def __init__(
        self,
        rules: ProviderRules,
        poster: AsyncBatchPoster,
        policy: RetryPolicy,
        record: Recorder,
        on_retry: Callable[[int], None],
    ) -> None:
        super().__init__(rules, policy, record, on_retry, poster.base_url)
        self.poster = poster

    async def _post(
        self, sub: list[Pending], deadline: float | None, again: RetryableFailure | None = None
    ) -> Reply:
        reply: Reply
        progress = Progress()
        try:
            reply = await self.poster.post(
                self.url, self.rules.body(sub), HEADERS, self._bounds(deadline, progress)
            )
        except Exception as exc:
            reply = exc
        except asyncio.CancelledError as exc:
            _cut_before_sending(sub, progress)
            task = asyncio.current_task()
            if task is None or task.cancelling():
                self._count_again(sub, again, progress)
                raise
            # Raised inside the request (by a transport or a hook) while nobody cancelled this task: a
            # failure of this request. Let through, it would end the lane as if cancelled, with its events
            # left without an outcome.
            reply = TransportError(
                f"the request was cancelled from inside, not by its caller: {shorten(repr(exc))}"
            )
        except BaseException:
            _cut_before_sending(sub, progress)
            self._count_again(sub, again, progress)
            raise
        self._ended(sub, reply, progress, again)
        return reply

    async def _attempt(
        self, batch: list[Pending], deadline: float | None = None, again: RetryableFailure | None = None
    ) -> AttemptResult:
        plan = _plan(self.rules, batch, self.record)
        try:
            sub = next(plan)
            while True:
                sub = plan.send(await self._post(sub, deadline, again))
                again = None  # see SyncDelivery._attempt
        except StopIteration as done:
            result: AttemptResult = done.value
            return result

    async def deliver(self, batch: list[Pending]) -> None:
        deadline = self.policy.call_deadline()
        result = await self._attempt(batch, deadline)
        if not result.retry_later:
            return
        remaining = result.retry_later
        first = last = self._failure(result)
        try:
            async for attempt in self.policy.async_retrying(deadline):
                with attempt:
                    if first is not None:
                        failed, first = first, None
                        raise failed  # see _failure
                    result = await self._attempt(remaining, deadline, last)
                    remaining = result.retry_later
                    if (last := self._failure(result)) is not None:
                        raise last
        except RetryableFailure as exhausted:
            self._give_up(remaining, exhausted, "retries exhausted")
