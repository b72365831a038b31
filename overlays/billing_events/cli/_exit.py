"""Exit codes of the command line, and the error that ends a run with a usage error."""

from __future__ import annotations

from collections.abc import Mapping

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_FAILED = 2
EXIT_USAGE = 64


class UsageError(Exception):
    """Raised for a problem with the command line or its files; exits with 64."""


def exit_code_for(counts: Mapping[str, int]) -> int:
    """0 when everything was delivered, 2 when anything failed or is unknown, else 1 for rejections."""
    if counts.get("failed", 0) or counts.get("unknown", 0):
        return EXIT_FAILED
    if counts.get("rejected", 0) or counts.get("invalid", 0):
        return EXIT_REJECTED
    return EXIT_OK
