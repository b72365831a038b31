"""Lanes of an async ``send()`` that go on spread over one round trip, not bunched together.

A ``send()`` opens all its lanes at once: their first requests leave within a few
milliseconds and their answers come back together a round trip later. Each answer
then waits while the client works through the ones before it (parsing, outcomes,
the next batch: about a millisecond each), and so does the server's side, and the
lanes leave again as bunched as they came: a round of 16 lanes took 58 to 64 ms
at 50 ms of latency, where one request alone took 52. From its second batch on, a
lane starts a round trip divided by the lanes after the one before it, so each
answer finds the client free.

Spreading has a price: the lanes end a send as spread as they went, so the send
ends up to a round trip later. At 50 ms, 16 lanes and batches of 100 a round
took 67 ms bunched and 54 spread, against about 47 ms paid once: a send of 6
rounds ended 3% later spread (403 against 389 ms), one of 8 rounds 6% sooner
(501 against 532). So a send spreads only when it is known to have at least
``MIN_ROUNDS`` rounds: its events are a sequence (a list, a tuple) and, at the
most events a batch may hold, they fill that many rounds. A send of anything
else, whose length is unknown, goes bunched.

The round trip is learnt from the batches already delivered (their ``deliver()``
time): the first round of a new client teaches it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

# Weight of each new delivery in the running estimate.
WEIGHT = 0.2
# A delivery counts as at most this many estimates (a retry's backoff, a budget's wait): the
# estimate follows a slower server step by step, and one long retry does not spread lanes for long.
OUTLIER = 4.0
# The longest round trip lanes are spread over: every wait is bounded.
MAX_ROUND_TRIP = 1.0
# The fewest rounds a send must be known to have for its lanes to spread.
MIN_ROUNDS = 8


class RoundTrip:
    """A client's running estimate of how long one batch takes to deliver, in seconds."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def observe(self, seconds: float) -> None:
        if self.seconds <= 0.0:
            self.seconds = min(seconds, MAX_ROUND_TRIP)
            return
        seconds = min(seconds, OUTLIER * self.seconds, MAX_ROUND_TRIP)
        self.seconds += WEIGHT * (seconds - self.seconds)


def known_rounds(events: object, batch_events: int, lanes: int) -> int:
    """The rounds a send of ``events`` has at least: 0 when their number is unknown.

    Only a sequence (a list, a tuple) is asked: other sized things may count at a cost (a
    Dask bag computes itself) or not at all (a progress bar over a generator says None).
    """
    if not isinstance(events, Sequence):
        return 0
    try:
        count = len(events)
    except Exception:  # a sequence of the caller's own whose length cannot be told
        return 0
    return count // (batch_events * lanes)


class Spread:
    """The wait before each lane's second batch in one ``send()``: 0, 1, 2, ... spacings, in the order
    the lanes come back for it; the spacing is the round trip known then, divided by the lanes.

    A send known to have fewer than ``MIN_ROUNDS`` rounds waits for nothing.
    """

    def __init__(self, round_trip: RoundTrip, lanes: int, rounds: int) -> None:
        self._round_trip = round_trip
        self._lanes = lanes
        self._order = itertools.count()
        self._spacing: float | None = None if rounds >= MIN_ROUNDS else 0.0

    def next_wait(self) -> float:
        if self._spacing is None:
            self._spacing = self._round_trip.seconds / self._lanes
        return self._spacing * (next(self._order) % self._lanes)
