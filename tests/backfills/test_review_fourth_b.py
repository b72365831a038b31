"""Fourth reading (round 29): salvage notes, ``retried`` against what left, and the layout-4 digest
(``event_digest``'s fast path, Togai attribute text, other numeric text).

The xfail(strict=True) tests are defects found by the review; the others pin the important cases that
hold. Spools and clients run in process (``httpx.MockTransport``); backfills use the in-process mock.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from overlay.scripted import Scripted, accepted, togai_event
from overlay.spool_support import damaged_dead_file, drained_ids, killed, togai_spool

from backfills.support import START, Mock, backfill_for, stored_once
from billing_events import AsyncTogai, OutcomeStatus, RetryPolicy, Togai
from billing_events._keys import content_digest
from billing_events.backfill import partition as partition_module
from billing_events.backfill import send_partition
from billing_events.backfill.partition import event_digest
from billing_events.spool import _adopt

TOKEN = "review-token-fourth-b"
NO_WAIT = RetryPolicy(max_attempts=3, initial_delay=0, max_delay=0, max_retry_after=0)


# -- the spool: a salvage note and the adopter's own durability -------------------------------------------


def test_a_power_loss_after_a_salvage_note_loses_no_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: "group" survives a power loss for "everything tracked more than fsync_interval before the
    power went"; a damaged file's events were tracked long before. The power goes right after the first
    salvage note is synced: what is on disk then is every synced file, and the adopter's WAL only as far
    as it was synced (not at all: the keeper has not run yet, and SQLite's NORMAL does not sync a commit)."""
    live, after = tmp_path / "live", tmp_path / "after-power-loss"
    live.mkdir()
    damaged_dead_file(live, 400)
    monkeypatch.setattr(_adopt, "MERGE_CHUNK", 50)
    note_salvaged = _adopt._note_salvaged
    snapshots: list[Path] = []
    synced_wals: set[str] = set()
    fsync = os.fsync

    def tracing_fsync(fd: int) -> None:
        name = os.readlink(f"/proc/self/fd/{fd}")
        if name.endswith("-wal"):
            synced_wals.add(name)
        fsync(fd)

    def noted_then_power_lost(path: Path, runs: list[tuple[int, int]]) -> bool:
        written = note_salvaged(path, runs)
        if written and not snapshots:
            shutil.copytree(
                live,
                after,
                ignore=lambda folder, names: [
                    name
                    for name in names
                    if name.endswith("-wal") and str(Path(folder) / name) not in synced_wals
                ],
            )
            snapshots.append(after)
        return written

    monkeypatch.setattr(os, "fsync", tracing_fsync)
    monkeypatch.setattr(_adopt, "_note_salvaged", noted_then_power_lost)
    adopter = togai_spool(live)
    assert snapshots, "no salvage note was written"
    killed(adopter)
    monkeypatch.undo()

    rebooted = togai_spool(after)
    try:
        rebooted.adopt()
        ids = set(drained_ids(rebooted))
        missing = sorted({f"ev-{n}" for n in range(400)} - ids, key=lambda name: int(name[3:]))
        # Today: ev-0 .. ev-49, the first chunk, noted as taken in while only the unsynced WAL held them.
        assert not missing, f"{len(missing)} events lost: {missing[:3]} ... {missing[-1:]}"
    finally:
        rebooted.close()


def test_a_salvage_resumed_by_another_process_from_its_note_adopts_each_event_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A salvage cut short (a deadline after the first chunk) in one process, then picked up by another
    that knows it only from the note: every event once, none lost."""
    damaged_dead_file(tmp_path, 400)
    monkeypatch.setattr(_adopt, "MERGE_CHUNK", 50)
    calls = {"n": 0}

    def out_of_time(self: _adopt.Adoption) -> bool:
        calls["n"] += 1
        return calls["n"] == 2

    with monkeypatch.context() as patch:
        patch.setattr(_adopt.Adoption, "_out_of_time", out_of_time)
        first = togai_spool(tmp_path)
    assert first.recovered == 50
    first_ids = drained_ids(first)
    first.close()  # its own file (the 50) stays for the next sender, as a crash would leave it

    second = togai_spool(tmp_path)
    try:
        second.adopt()
        # The first's 50 come from its own file (it left them there); the rest from the damaged one.
        ids = drained_ids(second)
        assert len(ids) == len(set(ids)) == 400
        assert set(ids) == {f"ev-{n}" for n in range(400)} and len(first_ids) == 50
    finally:
        second.close()


# -- retried against what left --------------------------------------------------------------------------


def _refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


def test_retried_does_not_count_re_sends_whose_connection_was_refused() -> None:
    """README: retried counts "events sent again after a wait"; the fix of this round leaves out a re-send
    the rate budget refused, as it "never left". A re-send whose connection is refused never left either
    (the library itself treats ConnectError as "nothing was sent"), yet each is counted and logged at INFO
    as "4 events sent again after a wait"."""
    server = Scripted(default=_refused)
    client = Togai(TOKEN, base_url="http://togai.test", transport=server.transport(), retry=NO_WAIT)
    report = client.send([togai_event(n) for n in range(4)])
    # Nothing ever left: failed, not unknown (the provider surely does not have them).
    assert report.counts[OutcomeStatus.FAILED] == 4
    assert len(server.requests) == NO_WAIT.max_attempts
    # Today: 8 (4 events x 2 re-sends), none of which reached anyone.
    assert client.stats.retried == 0


def test_retried_counts_a_re_send_that_reached_the_server_after_a_refused_connection() -> None:
    server = Scripted(
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.Response(503, json={"message": "down"}),
        default=accepted,
    )
    client = Togai(TOKEN, base_url="http://togai.test", transport=server.transport(), retry=NO_WAIT)
    report = client.send([togai_event(n) for n in range(4)])
    assert report.counts[OutcomeStatus.DELIVERED] == 4
    assert client.stats.retried >= 4  # the third request certainly left again


def test_a_re_send_that_left_before_the_caller_cancelled_is_counted_as_retried() -> None:
    """The second request reached the server (it holds it) when the caller's task is cancelled: those 4
    events were sent again after a wait, and may be stored (their outcome is not 'failed')."""

    async def scenario() -> tuple[int, int]:
        arrived = asyncio.Event()
        requests: list[httpx.Request] = []

        async def handler(request: httpx.Request) -> httpx.Response:
            requests.append(request)
            if len(requests) == 1:
                return httpx.Response(503, json={"message": "down"})
            arrived.set()
            await asyncio.Event().wait()  # the answer never comes
            raise AssertionError("unreachable")

        client = AsyncTogai(
            TOKEN, base_url="http://togai.test", transport=httpx.MockTransport(handler), retry=NO_WAIT
        )
        task = asyncio.create_task(client.send([togai_event(n) for n in range(4)]))
        await arrived.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        retried = client.stats.retried
        await client.aclose()
        return len(requests), retried

    sent, retried = asyncio.run(scenario())
    assert sent == 2
    # Today: 0.
    assert retried == 4


# -- the layout-4 digest -----------------------------------------------------------------------------------


def _lago(amount: Any, index: int) -> dict[str, Any]:
    return {
        "external_subscription_id": "sub_1",
        "code": "compute_cost",
        "timestamp": START + index,
        "precise_total_amount_cents": amount,
    }


def _togai(calls: Any, index: int) -> dict[str, Any]:
    return {
        "schemaName": "api_calls",
        "accountId": f"acct_{index}",
        "timestamp": dt.datetime.fromtimestamp(START + index, dt.UTC),
        "attr.calls": calls,
    }


def test_lago_amounts_read_as_floats_keep_their_derived_keys_when_the_null_is_fixed(
    mock: Mock, tmp_path: Path
) -> None:
    """README (backfills): pandas turns a column of integers with one null into floats; "without this the
    events would read 5.0 until the null row is fixed and 5 in the run after, and every row would be billed
    twice". Lago's precise_total_amount_cents is sent as text ("1000.0", then "1000"), a decimal to Lago
    (lago-api casts it with BigDecimal(value.to_s)): one amount, so one event per row."""
    pd = pytest.importorskip("pandas")
    from billing_events.backfill._engines import pandas_rows

    good = [_lago(1000 + i, i) for i in range(5)]
    with_null = pd.DataFrame([*good, _lago(None, 9)])
    assert with_null["precise_total_amount_cents"].dtype == "float64"
    job = backfill_for(mock, "lago", tmp_path / "ckpt").prepare()
    first = send_partition(pandas_rows(with_null, "dask"), job)
    assert first["delivered"] == 6
    assert {e.get("precise_total_amount_cents") for e in mock.events("lago")} >= {"1000.0"}

    fixed = pd.DataFrame([*good, _lago(7, 9)])
    assert fixed["precise_total_amount_cents"].dtype == "int64"
    send_partition(pandas_rows(fixed, "dask"), job)

    # The row at START + 9 did change (no amount, then 7): two events. The five others did not.
    # Today: 12, each good row stored as "1000.0" and again as "1000" under another derived key.
    assert stored_once(mock, "lago") == (7, 7)


def test_a_togai_attribute_of_minus_zero_keeps_its_derived_key_when_read_as_the_integer_0(
    mock: Mock, tmp_path: Path
) -> None:
    """A negated column (a credit, -x) of integers with a null among them: 0 reads -0.0 beside the null
    and 0 once it is fixed. Togai gets "-0.0" and then "0", one quantity; elsewhere (a Lago property)
    -0.0 already counts as 0."""
    assert event_digest({"p": -0.0}) == event_digest({"p": 0})  # holds
    job = backfill_for(mock, "togai", tmp_path / "ckpt").prepare()
    send_partition([_togai(5.0, 1), _togai(-0.0, 2)], job)
    again = send_partition([_togai(5, 1), _togai(0, 2)], job)

    assert again["rows"] == 2
    # Today: (3, 3): the 5.0 row meets its 5 (one event), the -0.0 row does not meet its 0 (two).
    assert stored_once(mock, "togai") == (2, 2)


def _walked(event: dict[str, Any]) -> bytes:
    """event_digest's slow path, whatever the fast path would say."""
    whole = partition_module._whole(event)
    assert isinstance(whole, dict)
    if isinstance(whole.get("attributes"), list):
        whole["attributes"] = [partition_module._whole_attribute(item) for item in whole["attributes"]]
    return content_digest(whole)


NO_WHOLE_FLOAT = [
    {"id": "v1.0", "note": "e+5", "n": 3, "x": 1.5},
    {"properties": {"tag": "a:1.0,", "deep": [{"t": "2e+16"}, [0.25, -7]]}},
    {"properties": {"small": 1e-7, "big_int": 2**63, "neg": -(2**63), "b": True, "z": None}},
    {"properties": {"\u00e9.0": "x", "s": "1000.0"}},  # ".0" in a key and in a Lago text value
    {
        "attributes": [{"name": "calls", "value": "1e3"}, {"name": "q", "value": "5.5"}],
        "dimensions": {"d": "7.0"},
    },
    {"attributes": [{"name": "calls", "value": "1000"}], "id": "x.0e+1"},
]
WHOLE_FLOAT = [
    ({"properties": {"n": 5.0}}, {"properties": {"n": 5}}),
    ({"properties": {"n": [1e16, {"m": -3.0}]}}, {"properties": {"n": [10**16, {"m": -3}]}}),
    ({"properties": {"n": 1.5e16, "note": "5.0"}}, {"properties": {"n": 15 * 10**15, "note": "5.0"}}),
    ({"properties": {"n": -0.0}}, {"properties": {"n": 0}}),
    ({"attributes": [{"name": "c", "value": "1000.0"}]}, {"attributes": [{"name": "c", "value": "1000"}]}),
    ({"attributes": [{"name": "c", "value": "0.0"}]}, {"attributes": [{"name": "c", "value": "0"}]}),
]


@pytest.mark.parametrize("event", NO_WHOLE_FLOAT)
def test_event_digest_of_an_event_without_whole_floats_is_its_own_digest_by_either_path(
    event: dict[str, Any],
) -> None:
    assert event_digest(event) == _walked(event) == content_digest(event)


@pytest.mark.parametrize(("as_float", "as_int"), WHOLE_FLOAT)
def test_event_digest_counts_a_whole_float_as_its_integer(
    as_float: dict[str, Any], as_int: dict[str, Any]
) -> None:
    assert event_digest(as_float) == _walked(as_float) == event_digest(as_int) == content_digest(as_int)


def test_event_digest_leaves_text_that_no_float_writes_alone() -> None:
    # Text no whole float is written as (_text writes plain digits): left as it is, a distinct event.
    def attribute(value: str) -> dict[str, Any]:
        return {"attributes": [{"name": "c", "value": value}]}

    assert event_digest(attribute("1e3")) != event_digest(attribute("1000"))
    assert event_digest({"properties": {"s": "5.0"}}) != event_digest({"properties": {"s": "5"}})
