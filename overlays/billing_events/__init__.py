"""Reliable senders of usage-billing events for Togai and Lago.

The typed clients generated from ``specs/`` are importable as ``togai_api`` and
``lago_api``; this package adds configuration, batching, retries, background
sending and per-event outcomes on top of them::

    from billing_events import Togai

    with Togai() as togai:  # TOGAI_API_TOKEN from the environment
        report = togai.send(events)
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

from .aio import AsyncLago, AsyncTogai
from .aio_background import AsyncBackgroundSender
from .background import BackgroundSender
from .client import Lago, Togai
from .config import ENDPOINTS, Secret
from .deadletter import BadLine, DeadLetter, DeadLetterFile, read_dead_letters
from .errors import (
    APIError,
    AuthError,
    BillingEventsError,
    ConfigurationError,
    InvalidEventError,
    NotFoundError,
    QueueFullError,
    RateLimitedError,
    RejectedError,
    RequestTimeoutError,
    SenderClosedError,
    ServerError,
    TransportError,
)
from .outcomes import Outcome, OutcomeStatus, Report, partial_report
from .retry import RetryPolicy
from .spool import SpoolConfig
from .stats import Stats

# A library adds no output of its own: the application decides where records go (see README, Logging).
logging.getLogger("billing_events").addHandler(logging.NullHandler())

__all__ = [
    "ENDPOINTS",
    "APIError",
    "AsyncBackgroundSender",
    "AsyncLago",
    "AsyncTogai",
    "AuthError",
    "BackgroundSender",
    "BadLine",
    "BillingEventsError",
    "ConfigurationError",
    "DeadLetter",
    "DeadLetterFile",
    "InvalidEventError",
    "Lago",
    "NotFoundError",
    "Outcome",
    "OutcomeStatus",
    "QueueFullError",
    "RateLimitedError",
    "RejectedError",
    "Report",
    "RequestTimeoutError",
    "RetryPolicy",
    "Secret",
    "SenderClosedError",
    "ServerError",
    "SpoolConfig",
    "Stats",
    "Togai",
    "TransportError",
    "__version__",
    "partial_report",
    "read_dead_letters",
]
