"""Round 31, second reading of the day's data fixes: backfill layout 5, Backfill(stamp=...) writing
backfill.json, the Dask index lift, and the Lago rules for amounts and U+0000 (overlay and mock).

Every test here is a defect found by the review, as a strict xfail.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from backfills.support import START, TOKEN, Mock, backfill_for, lago_rows, togai_row
from billing_events import InvalidEventError, Lago
from billing_events.backfill import CheckpointError, send_partition
from billing_events.backfill._clients import this_process

# Where the previous release left a job begun with Backfill(stamp=...): no backfill.json, layout 4.
PREVIOUS_LAYOUT = 4


def test_an_explicit_stamp_job_of_the_previous_release_keeps_its_togai_keys(
    mock: Mock, tmp_path: Path
) -> None:
    """A user began a Togai backfill with ``Backfill(stamp=...)`` on the previous release (which wrote no
    ``backfill.json`` for such a job, and ran it at layout 4), upgrades, and re-runs it. prepare() finds no
    job file and writes one of layout 5, so the row (attributes not in the order of their names) is hashed
    anew: it goes out again under a new derived key and Togai bills it twice. The job should keep layout 4
    (its partitions are there), as a job whose backfill.json says 4 does, and count the row settled."""
    directory = tmp_path / "ckpt"
    stamp = START + 30 * 86400
    row = togai_row(calls=1, bytes=2)  # attr.calls before attr.bytes: layout 5 hashes them sorted
    # The previous release: prepare() with an explicit stamp wrote nothing and used its layout, 4.
    previous = attrs.evolve(
        backfill_for(mock, "togai", directory, stamp=stamp), layout=PREVIOUS_LAYOUT, driver=this_process()
    )
    assert send_partition([row], previous)["delivered"] == 1
    assert not (directory / "backfill.json").exists() and (directory / "partitions").is_dir()

    upgraded = backfill_for(mock, "togai", directory, stamp=stamp).prepare()
    again = send_partition([row], upgraded)

    assert len(mock.events("togai")) == 1  # billed once
    assert again["settled_earlier"] == 1
    assert upgraded.layout == PREVIOUS_LAYOUT


def test_a_job_stamped_with_a_float_can_be_run_again(mock: Mock, tmp_path: Path) -> None:
    """A user stamps the rows without a time at the period's end, in Unix seconds as Python gives them:
    ``Backfill(stamp=period_end.timestamp())``, a float (the README: "Unix seconds: the period's end, say";
    the previous release took it). The first run sends every row. The re-run after a failure then stops with
    ``CheckpointError: backfill.json is damaged ... restore it from a backup``: the job file holds the float
    it was given, and a stamp that is not an int reads as damage. The re-run should find its rows settled
    (or the float be refused, or written as its integer, on the first run, before anything is sent)."""
    period_end = dt.datetime(2024, 5, 31, tzinfo=dt.UTC).timestamp()
    assert isinstance(period_end, float)
    rows = lago_rows(3)
    first = backfill_for(mock, "lago", tmp_path / "ckpt", stamp=period_end).prepare()
    assert send_partition(rows, first)["delivered"] == 3

    again = send_partition(rows, backfill_for(mock, "lago", tmp_path / "ckpt", stamp=period_end).prepare())

    assert again["settled_earlier"] == 3
    assert len(mock.events("lago")) == 3


def test_the_refusal_of_another_stamp_names_the_stamp_to_pass(mock: Mock, tmp_path: Path) -> None:
    """A re-run with another ``stamp=`` is refused, and the message tells the user what to pass instead. It
    reads ``pass stamp={job['stamp']} (or none)``: the code, not the number. It should read
    ``pass stamp=<the job's stamp>``."""
    stamp = START + 30 * 86400
    backfill_for(mock, "lago", tmp_path / "ckpt", stamp=stamp).prepare()

    with pytest.raises(CheckpointError) as refused:
        backfill_for(mock, "lago", tmp_path / "ckpt", stamp=stamp + 1).prepare()

    assert "{job" not in str(refused.value)
    assert f"pass stamp={stamp}" in str(refused.value)


def test_a_layout_4_dask_job_indexed_by_id_keeps_its_keys_after_the_upgrade(
    mock: Mock, tmp_path: Path
) -> None:
    """A Togai backfill of a table read with ``dd.read_sql_table("usage", uri, index_col="id")`` (Dask needs
    an index column; the primary key is the usual one) began before the upgrade: the index was not part of
    the events, and every row went out under a derived key. After the upgrade the re-run lifts the index
    into the events as Togai's ``id``: every row goes out again under its table id, and Togai, which
    deduplicates by ``id`` alone, bills the whole table twice. A job of layout 4 should read the frame as it
    did (the lift is a change of keys, for new jobs only)."""
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    from billing_events.backfill import dask as dask_backfill

    directory = tmp_path / "ckpt"
    directory.mkdir()
    (directory / "backfill.json").write_bytes(b'{"version": 4, "provider": "togai", "stamp": %d}' % START)
    table = pd.DataFrame(
        {
            "schemaName": ["api_calls"] * 4,
            "accountId": [f"acct_{n}" for n in range(4)],
            "timestamp": [dt.datetime.fromtimestamp(START + 60 * n, dt.UTC) for n in range(4)],
            "attr.calls": [1, 2, 3, 4],
        },
        index=pd.Index([101, 102, 103, 104], name="id"),
    )
    # The previous release dropped the index: the same as running the frame with an unnamed one.
    before = dd.from_pandas(table.rename_axis(None), npartitions=2)
    first = dask_backfill.backfill(before, backfill_for(mock, "togai", directory), scheduler="sync")
    assert first.total["delivered"] == 4

    again = dask_backfill.backfill(
        dd.from_pandas(table, npartitions=2), backfill_for(mock, "togai", directory), scheduler="sync"
    )

    assert len(mock.events("togai")) == 4  # billed once
    assert again.total["settled_earlier"] == 4


def _lago_event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "transaction_id": "txn_1",
        "external_subscription_id": "sub_acme",
        "code": "api_calls",
        "timestamp": 1714558530,
    }
    return event | changes


def test_a_lago_amount_that_rounds_to_10_25_is_refused_like_10_25(mock: Mock) -> None:
    """``precise_total_amount_cents: "9999999999999999999999999.9999999999999999"`` (25 nines, then 16 after
    the point) passes validate(). Lago (Rails' decimal cast, and Postgres itself) rounds it to the column's 15
    places: 10**25, which ``decimal(40, 15)`` cannot hold, so the Postgres store fails the whole batch with a
    500, retried in vain (the mock answers it ``value_is_invalid``, as it does 10**25). The overlay should
    refuse it before sending, naming ``precise_total_amount_cents``, as it refuses 10**25."""
    amount = "9" * 25 + "." + "9" * 16
    # The mock, which casts as the server does, cannot store it either.
    with httpx.Client(base_url=mock.url("lago"), headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        answer = http.post("/events/batch", json={"events": [_lago_event(precise_total_amount_cents=amount)]})
    assert answer.status_code == 422
    assert "precise_total_amount_cents" in answer.text

    with Lago("t") as client, pytest.raises(InvalidEventError) as refused:
        client.validate(_lago_event(precise_total_amount_cents=amount))

    assert "precise_total_amount_cents" in refused.value.field


def test_the_mock_s_postgres_store_does_not_store_a_nul(mock: Mock) -> None:
    """A user tests their own sender (or a client with ``check_events=False``) against the mock: a batch
    holding an event with U+0000 in a property gets 200 and is stored. lago-api's Postgres store cannot save
    it (text and jsonb cannot hold U+0000; the overlay refuses it for that reason): the whole batch fails
    there with a 500 and nothing is stored. The mock should not store it either (a 422 naming the field,
    as it answers an amount the column cannot hold, or the 500)."""
    good = _lago_event(transaction_id="txn_good")
    bad = _lago_event(transaction_id="txn_bad", properties={"note": "a\x00b"})
    body = json.dumps({"events": [good, bad]})
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    with httpx.Client(base_url=mock.url("lago"), headers=headers) as http:
        answer = http.post("/events/batch", content=body)

    assert answer.status_code != 200
    assert mock.events("lago") == []


def test_a_base_url_given_as_an_httpx_url_still_makes_a_client() -> None:
    """``Lago(token, base_url=httpx.URL("https://lago.example/api/v1"))`` made a client before today's fix
    (the URL is read with ``httpx.URL(base_url)``); now the constructor raises ``TypeError: argument of
    type 'URL' is not iterable``, not even a ConfigurationError. It should make the client as before."""
    with Lago("t", base_url=httpx.URL("https://lago.example/api/v1")) as client:
        assert "lago.example" in repr(client)


def test_a_dask_row_dated_past_year_9999_is_its_own_problem(mock: Mock, tmp_path: Path) -> None:
    """A Lago backfill of Parquet read with Arrow types (``dd.read_parquet(..., dtype_backend="pyarrow")``)
    where one row's time is past year 9999 (a typo, a "never" sentinel): Python's datetime cannot hold it,
    and the OverflowError comes out of the whole backfill, so the good row beside it is never sent. The CLI
    reads the same file with that row invalid and the rest sent (today's fix); the backfill should too."""
    pa = pytest.importorskip("pyarrow")
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    from billing_events.backfill import dask as dask_backfill

    kind = pa.timestamp("us", tz="UTC")
    micros = [START * 1_000_000, 253_402_300_800 * 1_000_000 + 86_400 * 1_000_000]  # 2024-05-01; 10000-01-02
    usage = pd.DataFrame(
        {
            "external_subscription_id": ["sub_good", "sub_far"],
            "code": ["api_calls", "api_calls"],
            "timestamp": pd.Series(pa.array(micros, pa.int64()).cast(kind), dtype=pd.ArrowDtype(kind)),
        }
    )
    frame = dd.from_pandas(usage, npartitions=1)

    result = dask_backfill.backfill(frame, backfill_for(mock, "lago", tmp_path / "ckpt"), scheduler="sync")

    assert [event["external_subscription_id"] for event in mock.events("lago")] == ["sub_good"]
    assert result.total["delivered"] == 1
