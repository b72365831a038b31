"""The engine-neutral core: keys, timestamps and checkpoints that do not depend on where a partition ran."""

from __future__ import annotations

import datetime as dt
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import numpy
import orjson
import pytest

from backfills.support import (
    FAULTS,
    START,
    TOKEN,
    FailFirstAttempt,
    Mock,
    backfill_for,
    lago_rows,
    stored_once,
    togai_rows,
)
from billing_events import RetryPolicy
from billing_events.backfill import Backfill, CheckpointError, send_partition
from billing_events.backfill._checkpoint import LAYOUT, PartitionCheckpoint
from billing_events.backfill.partition import IDENTIFY_GROUP, _identify, _Tally, partition_name


@pytest.mark.parametrize("lago_store", ["postgres", "clickhouse"])
def test_a_partition_run_again_in_another_order_sends_nothing(
    mock: Mock, tmp_path: Path, lago_store: str
) -> None:
    mock.reset(lago_store)
    mock.faults(**FAULTS)
    rows = lago_rows(500)
    backfill = backfill_for(mock, "lago", tmp_path / "ckpt", chunk_events=100).prepare()

    first = send_partition(rows, backfill)
    # A new Backfill, as on another day's driver: the stamp comes from the checkpoint directory.
    again = send_partition(reversed(rows), backfill_for(mock, "lago", tmp_path / "ckpt").prepare())

    assert first["partition"] == again["partition"]
    assert first["delivered"] + first["duplicate"] + first["unknown"] + first["failed"] == 500
    assert again["settled_earlier"] == first["delivered"] + first["duplicate"]
    assert again["sent"] == first["unknown"] + first["failed"]
    assert stored_once(mock, "lago") == (500, 500)


def test_a_partition_that_failed_midway_is_resumed_by_the_next_attempt_in_the_same_thread(
    mock: Mock, tmp_path: Path
) -> None:
    (tmp_path / "faults").mkdir()
    rows = lago_rows(600)
    failing = backfill_for(
        mock,
        "lago",
        tmp_path / "ckpt",
        chunk_events=100,
        on_chunk=FailFirstAttempt(str(tmp_path / "faults"), 1),
    ).prepare()
    with pytest.raises(RuntimeError, match="injected task failure"):
        send_partition(rows, failing)

    again = send_partition(rows, backfill_for(mock, "lago", tmp_path / "ckpt", chunk_events=100).prepare())

    assert again["settled_earlier"] >= 100
    assert again["delivered"] + again["duplicate"] == 600
    assert stored_once(mock, "lago") == (600, 600)


def test_identical_rows_are_distinct_events_and_keep_their_keys(mock: Mock, tmp_path: Path) -> None:
    rows = togai_rows(3) * 2  # every row twice
    backfill = backfill_for(mock, "togai", tmp_path / "ckpt").prepare()

    summary = send_partition(rows, backfill)

    assert summary["delivered"] == 6
    keys = sorted(event["id"] for event in mock.events("togai"))
    assert len(set(keys)) == 6
    assert {key.rsplit("-", 1)[1] for key in keys} == {"1", "2"}


def test_copies_of_a_row_are_numbered_across_the_whole_partition(mock: Mock, tmp_path: Path) -> None:
    # Rows become events a group at a time (IDENTIFY_GROUP): the count of each row's copies carries on.
    copies = 2 * IDENTIFY_GROUP // 3 + 5
    rows = togai_rows(3) * copies
    backfill = backfill_for(mock, "togai", tmp_path / "ckpt").prepare()

    summary = send_partition(rows, backfill)

    assert summary["delivered"] == 3 * copies
    keys = [event["id"] for event in mock.events("togai")]
    assert len(set(keys)) == 3 * copies
    numbers = sorted(int(key.rsplit("-", 1)[1]) for key in keys)
    assert numbers == sorted(list(range(1, copies + 1)) * 3)


def test_a_key_column_is_the_key_and_a_bad_row_is_rejected_alone(mock: Mock, tmp_path: Path) -> None:
    rows = [dict(row, event_id=f"evt-{i}") for i, row in enumerate(togai_rows(3))]
    rows[1]["attr.calls"] = b"\x00"
    backfill = backfill_for(mock, "togai", tmp_path / "ckpt", key_column="event_id").prepare()

    summary = send_partition(rows, backfill)

    assert (summary["delivered"], summary["rejected"]) == (2, 1)
    assert summary["problem"] == "rejected: attr.calls: a bytes value has no JSON form"
    assert sorted(event["id"] for event in mock.events("togai")) == ["evt-0", "evt-2"]


def test_a_row_without_a_key_under_a_key_column_is_rejected_alone(mock: Mock, tmp_path: Path) -> None:
    rows = [dict(row, event_id=f"evt-{i}") for i, row in enumerate(togai_rows(3))]
    rows[0]["event_id"] = None
    backfill = backfill_for(mock, "togai", tmp_path / "ckpt", key_column="event_id").prepare()

    summary = send_partition(rows, backfill)

    assert (summary["delivered"], summary["rejected"]) == (2, 1)
    assert summary["problem"].startswith("rejected: event_id: empty")
    assert sorted(event["id"] for event in mock.events("togai")) == ["evt-1", "evt-2"]


def test_an_event_the_spec_check_refuses_is_named_in_the_summary(mock: Mock, tmp_path: Path) -> None:
    rows = togai_rows(2)
    rows[0]["attr.calls"] = "3,5"
    backfill = backfill_for(mock, "togai", tmp_path / "ckpt").prepare()

    summary = send_partition(rows, backfill)

    assert (summary["delivered"], summary["rejected"]) == (1, 1)
    assert summary["problem"].startswith("rejected: ")
    assert "3,5" in summary["problem"]


def test_the_checkpoint_can_be_an_fsspec_url(mock: Mock) -> None:
    url = "memory://backfill-tests/ckpt"
    rows = lago_rows(30)

    first = send_partition(rows, backfill_for(mock, "lago", url).prepare())
    again = send_partition(rows, backfill_for(mock, "lago", url).prepare())

    assert (first["delivered"], again["settled_earlier"], again["sent"]) == (30, 30, 0)
    assert stored_once(mock, "lago") == (30, 30)


def test_a_checkpoint_file_cut_short_is_ignored_and_its_rows_resent(mock: Mock, tmp_path: Path) -> None:
    backfill = backfill_for(mock, "lago", tmp_path / "ckpt", chunk_events=50).prepare()
    rows = lago_rows(100)
    send_partition(rows, backfill)
    saved = sorted((tmp_path / "ckpt" / "partitions").glob("*/*.settled"))
    assert len(saved) == 2
    saved[0].write_bytes(saved[0].read_bytes()[:-3])

    again = send_partition(rows, backfill)

    assert (again["settled_earlier"], again["sent"], again["duplicate"]) == (50, 50, 50)
    assert stored_once(mock, "lago") == (100, 100)


def test_the_token_stays_out_of_the_repr_and_rows_without_a_stamp_need_prepare(tmp_path: Path) -> None:
    backfill = Backfill("lago", str(tmp_path), client_options={"token": TOKEN})

    assert TOKEN not in repr(backfill)
    with pytest.raises(ValueError, match=r"prepare\(\)"):
        send_partition(lago_rows(1), backfill)


def test_a_checkpoint_directory_of_the_other_provider_is_refused(tmp_path: Path) -> None:
    Backfill("lago", str(tmp_path)).prepare()

    with pytest.raises(Exception, match="holds a lago backfill, not togai"):
        Backfill("togai", str(tmp_path)).prepare()


FAR_OFF_ZONE = dt.timezone(dt.timedelta(hours=-5))


@pytest.mark.parametrize(
    ("provider", "column", "value", "problem"),
    [
        ("lago", "prop.n", 10**30, "rejected: prop.n: an integer of 100 bits does not fit in 64 bits"),
        ("lago", "prop.n", {"deep": [-(2**70)]}, "rejected: prop.n.deep[0]: an integer of 71 bits"),
        ("togai", "timestamp", b"\x00", "rejected: timestamp: a bytes value has no JSON form"),
        ("lago", "properties", numpy.array([1, 2]), "rejected: properties: a ndarray value has no JSON form"),
        ("togai", "timestamp", {1, 2}, "rejected: timestamp: a set value has no JSON form"),
        (
            "togai",
            "timestamp",
            dt.datetime(9999, 12, 31, 23, tzinfo=FAR_OFF_ZONE),
            "rejected: timestamp: 9999-12-31 23:00:00-05:00 is out of the range of a timestamp",
        ),
    ],
)
def test_a_row_with_a_value_of_an_odd_type_is_rejected_alone(
    mock: Mock, tmp_path: Path, provider: str, column: str, value: object, problem: str
) -> None:
    # A Bag's rows and a pandas object column hold any Python value, not only what Arrow would give.
    rows = lago_rows(3) if provider == "lago" else togai_rows(3)
    rows[1][column] = value
    backfill = backfill_for(mock, provider, tmp_path / "ckpt").prepare()

    summary = send_partition(rows, backfill)

    assert (summary["delivered"], summary["rejected"]) == (2, 1)
    assert summary["problem"].startswith(problem)
    assert stored_once(mock, provider) == (2, 2)


@pytest.mark.parametrize("key_column", [None, "event_id"])
@pytest.mark.parametrize("odd", [None, ["external_subscription_id", "sub_1"], {7: "seven"}])
def test_a_row_that_is_not_a_mapping_of_column_names_is_rejected_alone(
    mock: Mock, tmp_path: Path, odd: object, key_column: str | None
) -> None:
    rows: list[Any] = [dict(row, event_id=f"evt-{i}") for i, row in enumerate(lago_rows(3))]
    rows[2] = odd if not isinstance(odd, dict) else {**rows[2], **odd}
    backfill = backfill_for(mock, "lago", tmp_path / "ckpt", key_column=key_column).prepare()

    summary = send_partition(rows, backfill)

    assert (summary["delivered"], summary["rejected"]) == (2, 1)
    assert summary["problem"].startswith("rejected: row: ")
    assert stored_once(mock, "lago") == (2, 2)


@pytest.mark.parametrize("key_column", ["event_number", None], ids=["key_column", "transaction_id"])
def test_a_key_column_of_whole_numbers_keeps_its_keys_when_pandas_makes_it_float(
    mock: Mock, tmp_path: Path, key_column: str | None
) -> None:
    # pandas stores a column of whole numbers with one null as floats (5.0); once the null row is
    # fixed and the backfill run again, the same column is integers (5). The keys must not change.
    pd = pytest.importorskip("pandas")
    from billing_events.backfill._engines import pandas_rows

    column = key_column or "transaction_id"
    rows = [dict(row, **{column: 1000 + i}) for i, row in enumerate(lago_rows(5))]
    with_null = pd.DataFrame([*rows, dict(rows[0], **{column: None})])
    assert with_null[column].dtype == "float64"
    first = send_partition(
        pandas_rows(with_null, "dask"),
        backfill_for(mock, "lago", tmp_path / "first", key_column=key_column).prepare(),
    )
    fixed = pd.DataFrame(rows)
    assert fixed[column].dtype == "int64"
    again = send_partition(
        pandas_rows(fixed, "dask"),
        backfill_for(mock, "lago", tmp_path / "again", key_column=key_column).prepare(),
    )

    # The null row: rejected under a named key column, else sent under a derived key (be-...).
    assert first["delivered"] == (5 if key_column else 6)
    assert again["delivered"] + again["duplicate"] == 5
    given = sorted(
        key for key in (e["transaction_id"] for e in mock.events("lago")) if not key.startswith("be-")
    )
    assert given == [str(1000 + i) for i in range(5)]


def _age_checkpoint(directory: Path, days: float) -> None:
    """Make every chunk file of the checkpoint look written ``days`` ago (its name starts with the time)."""
    then = time.time_ns() - int(days * 86_400e9)
    for path in directory.rglob("*.settled"):
        path.rename(path.with_name(f"{then:020d}{path.name[20:]}"))


@pytest.mark.parametrize(
    ("age_days", "resend_past_window", "sent_again"),
    [(10, False, True), (46, False, False), (46, True, True)],
)
def test_togai_rows_unknown_for_longer_than_its_45_day_window_are_not_sent_again(
    mock: Mock, tmp_path: Path, age_days: float, resend_past_window: bool, sent_again: bool
) -> None:
    # Togai refuses a repeated id for 45 days: past that, a re-send of an event it may have stored is
    # billed twice, so such rows stay unknown unless the user asks for them.
    rows = togai_rows(20)
    single_try = {"token": TOKEN, "base_url": mock.url("togai"), "retry": RetryPolicy(max_attempts=1)}
    first = Backfill("togai", str(tmp_path / "ckpt"), client_options=single_try).prepare()
    mock.faults(rate_lost_response=1.0)  # stored, but the answer never arrives
    assert send_partition(rows, first)["unknown"] == 20
    mock.faults(rate_lost_response=0.0)
    _age_checkpoint(tmp_path / "ckpt", age_days)

    again = send_partition(rows, attrs.evolve(first, resend_past_window=resend_past_window))

    if sent_again:
        assert (again["sent"], again["delivered"], again["unknown"]) == (20, 20, 0)
    else:
        assert (again["sent"], again["unknown"]) == (0, 20)
        assert "past togai's window for repeated keys" in again["problem"]
    assert stored_once(mock, "togai") == (20, 20)


def test_lago_keeps_its_keys_for_good_so_old_unknown_rows_are_sent_again(mock: Mock, tmp_path: Path) -> None:
    rows = lago_rows(20)
    single_try = {"token": TOKEN, "base_url": mock.url("lago"), "retry": RetryPolicy(max_attempts=1)}
    first = Backfill("lago", str(tmp_path / "ckpt"), client_options=single_try).prepare()
    mock.faults(rate_lost_response=1.0)
    assert send_partition(rows, first)["unknown"] == 20
    mock.faults(rate_lost_response=0.0)
    _age_checkpoint(tmp_path / "ckpt", 400)

    again = send_partition(rows, first)

    assert again["sent"] == 20 and again["unknown"] == 0
    assert stored_once(mock, "lago") == (20, 20)


def test_rows_without_a_stamp_are_refused_before_anything_is_sent(mock: Mock, tmp_path: Path) -> None:
    # Rows are turned into events as they are sent: the one row that needs the job's stamp is the last.
    rows = [dict(row, timestamp=START + i) for i, row in enumerate(lago_rows(300))]
    rows[-1]["timestamp"] = None
    backfill = backfill_for(mock, "lago", tmp_path / "ckpt", chunk_events=100)  # prepare() not called

    with pytest.raises(ValueError, match=r"prepare\(\)"):
        send_partition(rows, backfill)

    assert mock.events("lago") == []


NAME_IN_A_NEW_PROCESS = """
import decimal, sys
from billing_events.backfill.partition import partition_name, row_digest
rows = [
    {"code": "api_calls", "prop.tags": {"b", "a", "c", "d"}, "prop.blob": b"\\x00\\x01"},
    {"code": "api_calls", "prop.big": 2**70, "prop.price": decimal.Decimal("1.50")},
    {"code": "api_calls", 7: "seven"},
]
print(partition_name(row_digest(row) for row in rows))
"""


def test_a_partition_of_odd_values_has_the_same_name_in_every_process() -> None:
    # A set's order follows the process's string hashes (PYTHONHASHSEED): a retried task runs in another
    # process, and must find the same checkpoint.
    names = {
        subprocess.run(
            [sys.executable, "-c", NAME_IN_A_NEW_PROCESS],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        for seed in ("1", "2", "3")
    }

    assert len(names) == 1 and len(names.pop()) == 32


def test_a_job_whose_partitions_were_named_by_their_events_still_finds_its_checkpoints(
    mock: Mock, tmp_path: Path
) -> None:
    # Written by an earlier version: a job file of layout 1, a partition named by its events' fingerprints.
    directory = tmp_path / "ckpt"
    directory.mkdir()
    (directory / "backfill.json").write_bytes(
        orjson.dumps({"version": 1, "provider": "lago", "stamp": START})
    )
    backfill = backfill_for(mock, "lago", directory).prepare()
    rows = lago_rows(50)
    prints = [print_ for print_, _ in _identify(rows, backfill, _Tally())]
    PartitionCheckpoint(str(directory), {}, partition_name(prints)).save(
        (print_, "delivered") for print_ in prints
    )

    again = send_partition(rows, backfill)

    assert (again["settled_earlier"], again["delivered"], again["sent"]) == (50, 50, 0)
    assert mock.events("lago") == []
    # A new job is written with the current layout.
    assert backfill_for(mock, "lago", tmp_path / "new").prepare().layout == LAYOUT


def test_a_job_of_layout_3_keeps_the_digests_and_keys_it_began_with(mock: Mock, tmp_path: Path) -> None:
    # Written before whole-number floats counted as integers in digests: a 5.0 and a 5 stay two events
    # there, as its first runs sent them; a new job takes them as one. Both send the value as read.
    directory = tmp_path / "ckpt"
    directory.mkdir()
    (directory / "backfill.json").write_bytes(
        orjson.dumps({"version": 3, "provider": "lago", "stamp": START})
    )
    old = backfill_for(mock, "lago", directory).prepare()
    new = backfill_for(mock, "lago", tmp_path / "new").prepare()
    for job, subscription in ((old, "sub_old"), (new, "sub_new")):
        row = {"external_subscription_id": subscription, "code": "api_calls", "timestamp": START}
        send_partition([{**row, "prop.n": 5.0}], job)
        send_partition([{**row, "prop.n": 5}], job)

    sent = [(event["external_subscription_id"], event["properties"]["n"]) for event in mock.events("lago")]
    assert [(sub, n, type(n)) for sub, n in sent] == [
        ("sub_old", 5.0, float),
        ("sub_old", 5, int),
        ("sub_new", 5.0, float),
    ]


def test_a_job_file_cut_short_is_written_anew_before_any_partition_ran_and_refused_after(
    mock: Mock, tmp_path: Path
) -> None:
    (tmp_path / "ckpt").mkdir()
    job = tmp_path / "ckpt" / "backfill.json"
    job.write_bytes(b'{"version": 1, "prov')  # the driver was killed while writing it

    backfill = backfill_for(mock, "lago", tmp_path / "ckpt").prepare()
    send_partition(lago_rows(5), backfill)
    job.write_bytes(b"")

    with pytest.raises(CheckpointError, match=r"backfill\.json is damaged, and partitions were sent"):
        backfill_for(mock, "lago", tmp_path / "ckpt").prepare()
    assert stored_once(mock, "lago") == (5, 5)


FREEZE_IN_A_WORKER = """
import gc, pickle, sys
from backfills.support import lago_rows
from billing_events.backfill import send_partition
with open(sys.argv[1], "rb") as prepared:
    backfill = pickle.load(prepared)  # prepared by the driver, as an engine ships it to a worker
counts = [gc.get_freeze_count()]
for part in range(2):
    rows = [dict(row, **{"prop.part": part}) for row in lago_rows(20)]
    summary = send_partition(rows, backfill)
    assert summary["delivered"] == 20, summary
    counts.append(gc.get_freeze_count())
print(*counts)
"""


@pytest.mark.parametrize("freeze", [True, False])
def test_a_worker_freezes_its_heap_once_before_its_first_partition_unless_told_not_to(
    mock: Mock, tmp_path: Path, freeze: bool
) -> None:
    backfill = backfill_for(mock, "lago", tmp_path / "ckpt", freeze_heap=freeze).prepare()
    prepared = tmp_path / "backfill.pickle"
    prepared.write_bytes(pickle.dumps(backfill))

    counts = subprocess.run(
        [sys.executable, "-c", FREEZE_IN_A_WORKER, str(prepared)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.split()

    before, first, second = map(int, counts)
    assert before == 0
    if freeze:
        # Frozen once: what was made since stays in the collector's sight (frozen objects freed since
        # by reference counting leave the count; a second freeze would have added the new ones).
        assert 0 < second <= first
    else:
        assert first == second == 0
