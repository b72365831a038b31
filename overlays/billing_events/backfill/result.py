"""What an adapter returns: a summary row per partition, and the overall total."""

from __future__ import annotations

from typing import Any

from attrs import frozen


@frozen
class BackfillResult:
    """``partitions``: a pandas DataFrame, one row per partition (``SUMMARY_COLUMNS``); ``total``: their sums.

    ``total["sent"]`` counts rows sent by this run; ``total["settled_earlier"]``
    rows an earlier run (or attempt) had settled, which were not sent again.
    """

    partitions: Any
    total: dict[str, int]

    @property
    def complete(self) -> bool:
        """True when every row is settled for good (delivered, duplicate or rejected)."""
        return self.total["failed"] == 0 and self.total["unknown"] == 0
