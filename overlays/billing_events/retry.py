"""Retry policy: exponential backoff with full jitter, server hints as a capped floor.

Built on tenacity. The wait honours ``Retry-After`` (seconds or HTTP date) and
Lago's ``X-RateLimit-Reset`` as a minimum, capped at ``max_retry_after``; the
loop stops at ``max_attempts`` or before sleeping past ``deadline``, or as soon
as ``abort`` is set (a closing sender).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import random
import threading
import time
from collections.abc import Callable, Mapping

import attrs
import tenacity

from . import _constants as C
from .errors import ConfigurationError
from .text import shown


class RetryableFailure(Exception):
    """Raised inside an attempt when some events must be sent again after a wait."""

    def __init__(self, cause: BaseException, retry_after: float | None) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.retry_after = retry_after


def finite(value: object) -> bool:
    """A finite number; False for an int too large for a float (10**400), which math.isfinite raises on."""
    try:
        return math.isfinite(value)  # type: ignore[arg-type]
    except OverflowError:
        return False


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not (isinstance(value, int | float) and value >= 0 and finite(value)):
        raise ConfigurationError(f"{attribute.name}: must be a finite number >= 0, got {shown(value)}")


def _attempts(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{attribute.name}: must be a whole number >= 1, got {shown(value)}")


@attrs.frozen
class RetryPolicy:
    """How failed requests are retried. The defaults suit production traffic."""

    max_attempts: int = attrs.field(default=C.MAX_ATTEMPTS, validator=_attempts)
    deadline: float = attrs.field(default=C.RETRY_DEADLINE, validator=_non_negative)
    initial_delay: float = attrs.field(default=C.INITIAL_RETRY_DELAY, validator=_non_negative)
    max_delay: float = attrs.field(default=C.MAX_RETRY_DELAY, validator=_non_negative)
    max_retry_after: float = attrs.field(default=C.MAX_RETRY_AFTER, validator=_non_negative)

    def backoff(self, attempt_number: int, retry_after: float | None) -> float:
        """Delay before attempt ``attempt_number + 1``: jittered backoff, at least the server's hint."""
        # The exponent stops growing long before max_delay could matter: 2.0 ** 1025 overflows a float.
        ceiling = min(self.max_delay, self.initial_delay * 2.0 ** min(attempt_number - 1, 64))
        delay = random.uniform(0, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return delay

    def retrying(self, deadline: float | None, abort: threading.Event | None = None) -> tenacity.Retrying:
        """The retry loop of one call whose attempts end by ``deadline`` (its ``call_deadline()``)."""
        stop = self._stop(deadline)
        if abort is not None:
            stop = stop | tenacity.stop_when_event_set(abort)
        return tenacity.Retrying(
            stop=stop, wait=self._wait, retry=_RETRY_ON, reraise=True, sleep=_sleeper(abort)
        )

    def async_retrying(self, deadline: float | None) -> tenacity.AsyncRetrying:
        return tenacity.AsyncRetrying(
            stop=self._stop(deadline), wait=self._wait, retry=_RETRY_ON, reraise=True
        )

    def call_deadline(self) -> float | None:
        """When one call (one batch, attempt in flight included) must end, on the monotonic clock;
        None for ``deadline=0``, which leaves each attempt its own timeout and retries by count only."""
        return time.monotonic() + self.deadline if self.deadline > 0 else None

    def _stop(self, deadline: float | None) -> tenacity.stop.stop_base:
        stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(self.max_attempts)
        if deadline is not None:
            stop = stop | _StopBefore(deadline)
        return stop

    def _wait(self, state: tenacity.RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        hint = failure.retry_after if isinstance(failure, RetryableFailure) else None
        return self.backoff(state.attempt_number, hint)


_RETRY_ON = tenacity.retry_if_exception_type(RetryableFailure)


class _StopBefore(tenacity.stop.stop_base):
    """Stop rather than sleep past ``deadline`` (monotonic): the call's own deadline, which may have begun
    before the loop did (a first attempt made outside it)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return time.monotonic() + retry_state.upcoming_sleep >= self.deadline


def _sleeper(abort: threading.Event | None) -> Callable[[float], None]:
    if abort is None:
        return time.sleep

    def sleep(seconds: float) -> None:
        abort.wait(seconds)

    return sleep


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The server's wait hint: ``Retry-After`` (seconds or HTTP date) or ``X-RateLimit-Reset``."""
    value = headers.get("retry-after")
    if value is not None:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                parsed = email.utils.parsedate_to_datetime(value)
                if parsed.tzinfo is None:
                    # An HTTP-date is UTC (RFC 9110, 5.6.7), also in the asctime form and with "-0000", which
                    # the parser returns without a zone: never the host's local time.
                    parsed = parsed.replace(tzinfo=dt.UTC)
                moment = parsed.timestamp()
            except (TypeError, ValueError, IndexError, OverflowError):
                return None  # not a date, or one no clock reaches (year 99999999999999999999)
            return max(0.0, moment - (time.time() if now is None else now))
    reset = headers.get("x-ratelimit-reset")
    if reset is not None:
        try:
            seconds = float(reset)
        except ValueError:
            return None
        # Some servers send an epoch time rather than a number of seconds.
        if seconds > 1e9:
            seconds -= time.time() if now is None else now
        return max(0.0, seconds)
    return None
