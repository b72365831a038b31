"""Reliable senders of usage-billing events for Togai and Lago.

The typed clients generated from ``specs/`` are importable as ``togai_api`` and
``lago_api``; this package adds configuration, batching, retries, background
sending and per-event outcomes on top of them.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
