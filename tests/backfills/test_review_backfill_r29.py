"""Round 29 review: backfills exactly once (keys, stamps, checkpoints, outcomes), through send_partition."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from backfills.support import TOKEN, Mock, backfill_for, stored_once
from billing_events import RetryPolicy
from billing_events.backfill import Backfill, send_partition


def _lago(n: int, **extra: Any) -> dict[str, Any]:
    return {"external_subscription_id": "sub_1", "code": "api_calls", "prop.n": n, **extra}


@pytest.mark.parametrize("spelling", ["timed_at_the_stamp", "empty_key_beside_null_key"])
def test_two_rows_that_are_one_event_once_stamped_are_both_billed(
    mock: Mock, tmp_path: Path, spelling: str
) -> None:
    backfill = backfill_for(mock, "lago", tmp_path / "ckpt").prepare()
    if spelling == "timed_at_the_stamp":
        # One row takes the job's stamp, the other carries that very second.
        rows = [_lago(1), _lago(1, timestamp=backfill.stamp)]
    else:
        # A key column half empty, half null: both rows are keyless, and both take the stamp.
        rows = [_lago(1, transaction_id=""), _lago(1, transaction_id=None)]

    summary = send_partition(rows, backfill)

    assert (summary["delivered"], summary["duplicate"]) == (2, 0)
    assert stored_once(mock, "lago") == (2, 2)


def test_a_nan_key_under_a_key_column_is_rejected_not_shared(mock: Mock, tmp_path: Path) -> None:
    # Rows from pandas records (df.to_dict("records"), a bag made from them) carry NaN for a missing key.
    # With key_column there is no shuffle: the two NaN rows sit in two partitions.
    backfill = backfill_for(mock, "lago", tmp_path / "ckpt", key_column="event_id").prepare()

    one = send_partition([_lago(1, event_id="evt-1"), _lago(2, event_id=float("nan"))], backfill)
    other = send_partition([_lago(3, event_id=float("nan"))], backfill)

    assert (one["delivered"], one["rejected"], other["duplicate"], other["rejected"]) == (1, 1, 0, 1)
    assert other["problem"].startswith("rejected: event_id: empty")
    assert [event["transaction_id"] for event in mock.events("lago")] == ["evt-1"]


def test_a_whole_number_property_read_as_float_keeps_the_derived_keys_when_the_null_is_fixed(
    mock: Mock, tmp_path: Path
) -> None:
    # The README's own case for key columns: pandas reads integers with one null as floats (5.0); once the
    # null row is fixed the column is integers (5). A re-run must not bill the other rows a second time.
    pd = pytest.importorskip("pandas")
    from billing_events.backfill._engines import pandas_rows

    good = [_lago(1000 + i, timestamp=1714521600 + i) for i in range(5)]
    with_null = pd.DataFrame([*good, _lago(None, timestamp=1714521700)])  # type: ignore[arg-type]
    assert with_null["prop.n"].dtype == "float64"
    backfill = backfill_for(mock, "lago", tmp_path / "ckpt").prepare()
    send_partition(pandas_rows(with_null, "dask"), backfill)

    fixed = pd.DataFrame([*good, _lago(7, timestamp=1714521700)])
    assert fixed["prop.n"].dtype == "int64"
    again = send_partition(pandas_rows(fixed, "dask"), backfill)

    stored = [event["properties"].get("n") for event in mock.events("lago")]
    assert sorted(n for n in stored if n is not None and n >= 1000) == [1000, 1001, 1002, 1003, 1004]
    assert again["delivered"] + again["duplicate"] == 6


DASK_RUN = """
import json, sys
import dask, dask.dataframe as dd, pandas as pd
from backfills.support import RETRY, TOKEN
from billing_events.backfill import Backfill
from billing_events.backfill import dask as dask_backfill
origin, checkpoint = sys.argv[1], sys.argv[2]
rows = [
    {"external_subscription_id": f"sub_{i % 5}", "code": "api_calls", "prop.n": i, "prop.tags": None}
    for i in range(40)
]
rows[7]["prop.tags"] = {"alpha", "beta", "gamma", "delta", "epsilon"}  # rejected: a set has no JSON form
with dask.config.set({"dataframe.convert-string": False}):
    frame = dd.from_pandas(pd.DataFrame(rows), npartitions=4)
job = Backfill("lago", checkpoint, client_options={"token": TOKEN, "base_url": origin, "retry": RETRY})
print(json.dumps(dask_backfill.backfill(frame, job, scheduler="synchronous").total))
"""


def test_a_rerun_in_another_process_finds_every_checkpoint_despite_a_rejected_row_holding_a_set(
    mock: Mock, tmp_path: Path
) -> None:
    # "The partitioning depends on the rows' values only, so ... a re-run job sees the same partitions."
    # A re-run is another driver process, whose workers hash strings with other seeds.
    totals = [
        json.loads(
            subprocess.run(
                [sys.executable, "-c", DASK_RUN, mock.url("lago"), str(tmp_path / "ckpt")],
                env={**os.environ, "PYTHONHASHSEED": seed},
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            ).stdout
        )
        for seed in ("1", "2")
    ]

    assert (totals[0]["delivered"], totals[0]["rejected"]) == (39, 1)
    # Every partition's checkpoint is found: nothing is sent again.
    assert (totals[1]["sent"], totals[1]["settled_earlier"]) == (0, 39)


@pytest.mark.parametrize(
    "spelling",
    ["{path}", "{path}/", "file://{path}", "file://{path}/", "{path}//", "local://{path}"],
)
def test_one_checkpoint_place_spelled_apart_keeps_one_stamp_and_its_settled_rows(
    mock: Mock, tmp_path: Path, spelling: str
) -> None:
    path = str(tmp_path / "ckpt")
    rows = [_lago(i) for i in range(10)]  # no timestamps: the job's stamp is in every key
    first = send_partition(rows, backfill_for(mock, "lago", path).prepare())

    again_job = backfill_for(mock, "lago", spelling.format(path=path)).prepare()
    again = send_partition(rows, again_job)

    assert first["delivered"] == 10
    assert (again["settled_earlier"], again["sent"]) == (10, 0)
    assert stored_once(mock, "lago") == (10, 10)


def test_counts_add_up_across_invalid_settled_unknown_and_resent_rows(mock: Mock, tmp_path: Path) -> None:
    rows = [_lago(i, timestamp=1714521600 + i) for i in range(40)]
    rows[3]["prop.n"] = b"\x00"  # rejected before sending

    def lose_answers_after_two_chunks(partition: str, chunks: int) -> None:
        if chunks == 2:
            mock.faults(rate_lost_response=1.0)  # stored, but the answer never arrives

    single_try = {"token": TOKEN, "base_url": mock.url("lago"), "retry": RetryPolicy(max_attempts=1)}
    job = Backfill(
        "lago",
        str(tmp_path / "ckpt"),
        client_options=single_try,
        chunk_events=10,
        max_in_flight=1,  # one chunk at a time, in order
        on_chunk=lose_answers_after_two_chunks,
    ).prepare()
    first = send_partition(rows, job)
    mock.faults(rate_lost_response=0.0)
    again = send_partition(list(reversed(rows)), attrs.evolve(job, on_chunk=None))

    for summary in (first, again):
        statuses = sum(summary[s] for s in ("delivered", "duplicate", "rejected", "failed", "unknown"))
        assert summary["rows"] == statuses == 40
    assert (first["delivered"], first["rejected"], first["unknown"]) == (20, 1, 19)
    # The row refused before sending has no checkpoint: it is read, and refused, again.
    assert (again["settled_earlier"], again["sent"], again["duplicate"], again["rejected"]) == (20, 19, 19, 1)
    assert stored_once(mock, "lago") == (39, 39)


def test_a_transport_error_naming_the_token_is_masked_in_the_summary(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused for {request.headers['authorization']} ({TOKEN})", request=request)

    options = {
        "token": TOKEN,
        "base_url": "http://billing.invalid",
        "transport": httpx.MockTransport(refuse),
        "retry": RetryPolicy(max_attempts=1),
    }
    job = Backfill("lago", str(tmp_path / "ckpt"), client_options=options).prepare()

    summary = send_partition([_lago(1)], job)

    assert summary["failed"] == 1 and "ConnectError" in summary["problem"]
    assert TOKEN not in summary["problem"] and TOKEN not in repr(job)
    assert all(TOKEN.encode() not in p.read_bytes() for p in (tmp_path / "ckpt").rglob("*") if p.is_file())
