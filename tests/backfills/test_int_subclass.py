"""An integer of a subclass of int (an IntEnum, say) in a row."""

from __future__ import annotations

from typing import Any

import pytest

from billing_events.cli._columnar import row_to_event

LAGO_ROW = {"transaction_id": "t1", "external_subscription_id": "s", "code": "c", "timestamp": 1714558530}


class Counted(int):
    """An int subclass that says when it is compared with one integer after another.

    ``value in range(-(2**63), 2**64)`` is O(1) only for an exact int: for a subclass (an IntEnum, say)
    CPython compares it with each integer of the range in turn, from -2**63, and never ends. A
    real IntEnum would hang the test; this one stops at the first comparison.
    """

    def __eq__(self, other: Any) -> bool:
        raise AssertionError("compared with the integers of a range one by one")

    __hash__ = int.__hash__


@pytest.mark.parametrize("provider", ["lago", "togai"])
def test_a_row_with_an_int_subclass_value_becomes_an_event(provider: str) -> None:
    if provider == "lago":
        row: dict[str, object] = {**LAGO_ROW, "prop.tier": Counted(3)}
    else:
        row = {
            "schemaName": "s",
            "accountId": "a",
            "timestamp": "2024-05-01T00:00:00Z",
            "attr.tier": Counted(3),
        }

    event, problem = row_to_event(provider, row)

    assert problem is None
    assert event is not None
