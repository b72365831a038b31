"""Round 31 hostile review of backfills: keys across re-runs, the job file, the masked checkpoint URL, the
Dask adapter's reading of a frame.

Every test here is a defect found by the review, as a strict xfail.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from backfills.support import START, Mock, backfill_for, lago_rows, stored_once, togai_row
from billing_events.backfill import Backfill, CheckpointError, send_partition
from billing_events.errors import ConfigurationError


def test_a_rerun_with_the_attribute_columns_in_another_order_does_not_bill_togai_rows_twice(
    mock: Mock, tmp_path: Path
) -> None:
    """A user re-runs a Togai backfill whose frame now lists ``attr.bytes`` before ``attr.calls`` (a changed
    ``select``, files written by another job). The partition keeps its name (rows are hashed with sorted
    keys) and its checkpoint says the row was delivered, yet the row goes out again under a new derived key,
    and Togai, which deduplicates by ``id`` alone, bills it twice. The row should keep its key (Togai does not
    care about the order of attributes) and be counted as settled earlier."""
    backfill = backfill_for(mock, "togai", tmp_path / "ckpt").prepare()
    first = send_partition([togai_row(calls=1, bytes=2)], backfill)

    again = send_partition([togai_row(bytes=2, calls=1)], backfill)

    assert first["partition"] == again["partition"]  # the same checkpoint, found
    assert stored_once(mock, "togai") == (1, 1)
    assert again["settled_earlier"] + again["duplicate"] == 1


def test_a_job_of_layout_4_keeps_hashing_attributes_in_the_order_they_came(
    mock: Mock, tmp_path: Path
) -> None:
    """A job begun before attributes counted by name (version 4) keeps its keys after the upgrade: its rows
    settled earlier are not sent again under new ones. There a re-run with the attr.* columns in another
    order still sends the row again (as that version did); a new job counts it as settled."""
    directory = tmp_path / "ckpt"
    directory.mkdir()
    (directory / "backfill.json").write_bytes(b'{"version": 4, "provider": "togai", "stamp": %d}' % START)
    old = backfill_for(mock, "togai", directory).prepare()
    new = backfill_for(mock, "togai", tmp_path / "new").prepare()
    for job, account in ((old, "acct_old"), (new, "acct_new")):
        send_partition([{**togai_row(calls=1, bytes=2), "accountId": account}], job)
        send_partition([{**togai_row(bytes=2, calls=1), "accountId": account}], job)

    sent = [event["accountId"] for event in mock.events("togai")]
    assert sorted(sent) == ["acct_new", "acct_old", "acct_old"]


def test_a_dask_frame_indexed_by_its_timestamp_is_not_billed_at_the_job_s_stamp(
    mock: Mock, tmp_path: Path
) -> None:
    """A pandas frame written to Parquet with ``set_index("timestamp")`` reads back through
    ``dd.read_parquet`` with its times as the index. The backfill drops the index without a word: every row
    goes out with the job's stamp (the day of the run), so May 2024's usage is billed in today's period.
    The rows should carry their own times, or the backfill should refuse the frame naming the index."""
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    from billing_events.backfill import dask as dask_backfill

    times = [dt.datetime.fromtimestamp(START + 3600 * hour, dt.UTC) for hour in range(4)]
    usage = pd.DataFrame(
        {"external_subscription_id": ["sub_1"] * 4, "code": ["api_calls"] * 4, "prop.n": [1, 2, 3, 4]},
        index=pd.DatetimeIndex(times, name="timestamp"),
    )
    usage.to_parquet(tmp_path / "usage.parquet")
    frame = dd.read_parquet(tmp_path / "usage.parquet")
    assert frame.index.name == "timestamp" and "timestamp" not in frame.columns

    refused = ""
    try:
        dask_backfill.backfill(frame, backfill_for(mock, "lago", tmp_path / "ckpt"), scheduler="sync")
    except ConfigurationError as exc:  # refusing the frame, naming its index, is a fix too
        refused = str(exc)
    if refused:
        assert "timestamp" in refused
        assert mock.events("lago") == []
    else:
        sent = sorted(event["timestamp"] for event in mock.events("lago"))
        expected = sorted(time.isoformat(timespec="milliseconds").replace("+00:00", "Z") for time in times)
        assert sent == expected


def test_a_directory_settled_on_a_sandbox_with_an_explicit_stamp_does_not_skip_production_rows(
    mock: Mock, tmp_path: Path
) -> None:
    """``Backfill(stamp=...)`` (rows without a time billed at the period's end, say) writes no
    ``backfill.json``, so the directory never records the server it was settled against. A production run
    pointed at the sandbox run's directory then finds every row settled and sends nothing: the usage is
    never billed, and ``result.complete`` is True. It should be refused ("use a directory per server"), as
    it is without an explicit stamp."""
    rows = lago_rows(5)
    stamp = START + 30 * 86400
    sandbox = backfill_for(mock, "lago", tmp_path / "ckpt", stamp=stamp).prepare()
    assert send_partition(rows, sandbox)["delivered"] == 5
    options = {**sandbox.client_options, "base_url": mock.url("lago").replace("127.0.0.1", "localhost")}
    production = Backfill("lago", str(tmp_path / "ckpt"), client_options=options, stamp=stamp)

    # What happens instead: every row counted as settled earlier, none sent to the other server.
    with pytest.raises(CheckpointError, match="use a directory per server"):
        send_partition(rows, production.prepare())


def test_a_checkpoint_password_holding_an_at_sign_is_masked_whole_in_the_repr() -> None:
    """An fsspec URL whose password holds an ``@`` (``ftp://user:p@ss@host/...``, which fsspec reads as the
    password ``p@ss``) shows in ``repr(Backfill)`` as ``user:***@ss@host``: the end of the password is
    printed in every log that shows the job. The whole password should be masked."""
    job = Backfill("lago", "ftp://user:p@ss@files.example/backfills/q2")

    shown = repr(job)

    assert "ss@files.example" not in shown
    assert "user:***@files.example" in shown
