"""Named limits and defaults, in one place."""

from __future__ import annotations

# Provider limits (see specs/*.yaml).
TOGAI_MAX_BATCH_EVENTS = 500
TOGAI_MAX_BODY_BYTES = 1_048_576
LAGO_MAX_BATCH_EVENTS = 100
# Lago publishes no byte limit; 1 MiB keeps a 100-event batch far from any proxy limit.
LAGO_MAX_BODY_BYTES = 1_048_576
# How long a provider refuses a repeated key. Togai: 45 days; Lago's stores keep refusing (or dropping)
# one for good. Past it, re-sending an event that may have been stored could bill it twice.
DEDUP_WINDOW_SECONDS: dict[str, float | None] = {"togai": 45 * 86_400.0, "lago": None}
# A re-send is held back this long before the window closes: it must reach the provider inside it.
DEDUP_WINDOW_MARGIN_SECONDS = 86_400.0

# Per-request timeouts, seconds: there is never an unbounded wait.
DEFAULT_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 5.0

# Retry policy.
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 30.0
MAX_ATTEMPTS = 8
RETRY_DEADLINE = 120.0
# Upper bound on how long a Retry-After / X-RateLimit-Reset header can make us wait.
MAX_RETRY_AFTER = 60.0
# Every 5xx (gateways' 520-530 and 599 included) may be transient; 501 and 505 never change on a retry.
RETRYABLE_STATUSES = frozenset({408, 429, *range(500, 600)} - {501, 505})

# Background sender.
DEFAULT_MAX_QUEUE_EVENTS = 100_000
DEFAULT_MAX_QUEUE_BYTES = 64 * 1024 * 1024
DEFAULT_FLUSH_INTERVAL = 1.0
DEFAULT_BLOCK_TIMEOUT = 1.0
DEFAULT_ATEXIT_TIMEOUT = 5.0
DEFAULT_CLOSE_TIMEOUT = 30.0
# How long a close past its deadline waits for the requests it stopped (cancelled, or woken from their
# rate budget wait) to say how far they got before it settles their events; a request still out after it
# is unknown.
STOP_GRACE = 0.5

# Durable spool.
DEFAULT_SPOOL_MAX_BYTES = 256 * 1024 * 1024
# Seconds between two fsyncs of the spool under durability="group": what a power loss can take.
DEFAULT_FSYNC_INTERVAL = 0.05

# Async client.
DEFAULT_MAX_IN_FLIGHT = 8

# Connection pool per client.
MAX_CONNECTIONS = 32

# The largest answer each request can legitimately get; more is a bad answer (retried, then unknown).
# Togai answers a batch with a message and, in a 207, one short entry per rejected event (500 at most).
TOGAI_MAX_BATCH_ANSWER_BYTES = 1024 * 1024
# Lago echoes the batch it stored: its events plus its own fields on each. Rails writes each "<", ">"
# and "&" of a value as a six-byte \u escape (and U+2028/U+2029, three bytes in UTF-8, the same way),
# so an echo can be six times the request's body.
LAGO_ECHO_GROWTH = 6
LAGO_MAX_BATCH_ANSWER_BYTES = LAGO_ECHO_GROWTH * LAGO_MAX_BODY_BYTES + 1024 * LAGO_MAX_BATCH_EVENTS
MAX_BATCH_ANSWER_BYTES = {"togai": TOGAI_MAX_BATCH_ANSWER_BYTES, "lago": LAGO_MAX_BATCH_ANSWER_BYTES}
# How much larger than its request a 2xx answer to a batch can be, and what each event may add to it.
ANSWER_GROWTH = {"togai": 2, "lago": LAGO_ECHO_GROWTH}
ANSWER_BYTES_PER_EVENT = 1024
# One stored event (find_event) or the fees of one event (estimate_fees). A stored event's properties come
# back from Postgres' jsonb, which writes every digit of a number: "1e308" (5 bytes sent) as 309 digits.
JSONB_NUMBER_GROWTH = 64
MAX_CALL_ANSWER_BYTES = JSONB_NUMBER_GROWTH * LAGO_MAX_BODY_BYTES
# Any non-2xx answer: our errors are short JSON, a proxy's HTML page is tens of KiB.
MAX_ERROR_ANSWER_BYTES = 256 * 1024
# A refused batch's answer can name each of its events (Lago's 422 keyed by index, Togai's 207 entries).
ERROR_ANSWER_BYTES_PER_EVENT = 512

# Text we keep or print: one value in a reason, a whole reason or server message.
MAX_VALUE_CHARS = 200
MAX_REASON_CHARS = 1000
# A server's request id as errors and log records keep it.
MAX_REQUEST_ID_CHARS = 100

# Published rate limits, requests per second per endpoint (per account, across all its keys and machines).
# Togai: 50/s on each ingestion endpoint. Lago Cloud: 500/s on event ingestion (single events and batches),
# 50/s on most other endpoints.
TOGAI_RATE_LIMITS = {"/ingest": 50.0, "/ingestBatch": 50.0, "*": 50.0}
LAGO_RATE_LIMITS = {"/events": 500.0, "/events/batch": 500.0, "*": 50.0}
