"""Named limits and defaults, in one place."""

from __future__ import annotations

# Provider limits (see specs/*.yaml).
TOGAI_MAX_BATCH_EVENTS = 500
TOGAI_MAX_BODY_BYTES = 1_048_576
LAGO_MAX_BATCH_EVENTS = 100
# Lago publishes no byte limit; 1 MiB keeps a 100-event batch far from any proxy limit.
LAGO_MAX_BODY_BYTES = 1_048_576

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

# Durable spool.
DEFAULT_SPOOL_MAX_BYTES = 256 * 1024 * 1024
# Seconds between two fsyncs of the spool under durability="group": what a power loss can take.
DEFAULT_FSYNC_INTERVAL = 0.05

# Async client.
DEFAULT_MAX_IN_FLIGHT = 8

# Connection pool per client.
MAX_CONNECTIONS = 32
