"""SpillMap: the same answers in memory and once moved to disk, for int and bytes values."""

from __future__ import annotations

import pytest

from billing_events._spill import SpillMap


@pytest.mark.parametrize("value", [7, b"\x00\x01first-line"])
def test_values_survive_the_move_to_disk_and_can_be_replaced(value: int | bytes) -> None:
    spill: SpillMap[int] | SpillMap[bytes] = SpillMap(memory_keys=3)
    keys = [f"key-{n}".encode() for n in range(5)]
    spill.put_many({key: value for key in keys[:3]})  # type: ignore[misc]
    assert not spill.on_disk
    spill.put_many({keys[3]: value})  # type: ignore[dict-item]
    assert spill.on_disk

    assert spill.get_many([keys[0], keys[3], keys[4], keys[0]]) == {keys[0]: value, keys[3]: value}
    replacement = 8 if isinstance(value, int) else b"other"
    spill.put_many({keys[0]: replacement})  # type: ignore[dict-item]
    assert spill.get_many([keys[0]]) == {keys[0]: replacement}
    spill.close()


def test_a_lookup_of_more_keys_than_one_statement_takes_is_answered_whole() -> None:
    spill: SpillMap[int] = SpillMap(memory_keys=10)
    keys = [n.to_bytes(4, "big") for n in range(70_000)]
    spill.put_many(dict.fromkeys(keys, 1))
    assert spill.on_disk
    assert len(spill.get_many(keys)) == 70_000
    spill.close()
