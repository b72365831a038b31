"""``make bench``: every figure measured in this run, against one local sink server.

    python -m bench.run [--seconds 1] [--providers togai,lago] [--scenarios 0,50]
                        [--skip-extras] [--caller-cost-only] [--profile DIR]

The server is ``bench.sink`` (a bare ASGI app under uvicorn, one process, httptools and uvloop)
started here in a separate process; it answers valid bodies with the
provider's success body and can sleep before answering. Rows per provider:
a raw httpx baseline, the official clients, then this project's sync
``send()``, background ``track()`` and async ``send()``; each as events/s and
as a ratio to the baseline (the first row). Then: ``track()`` cost on the
caller's thread (in memory, and with a spool at each durability), the cost of one call beside
PostHog's ``capture()`` and Segment's ``track()`` (``bench.caller_cost``), peak memory of a
byte-bounded queue of 1,000,000 events, the recovery of 1,000,000 spooled events by a new sender
after a SIGKILL, and the wall time of ``make regenerate``. Then the backfill rows: Lago events
through the Dask and Spark adapters with 2 workers (``bench.backfill``), beside the best
single-process Lago row of the same latency. Last, the pacing rows (``bench.pacing``): goodput at
the provider's rate budget against the rate-limited mock, from one process and from four.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.console import Console
from rich.table import Table

from bench import pacing
from bench.throughput import Measurement, Target, event_pool, rows_for

ROOT = Path(__file__).resolve().parents[2]
# httpx's async pool costs more CPU per request as connections grow; 16 was the best on 2 cores.
IN_FLIGHT = 16
# Every figure is the best of this many runs; on a shared machine noise only slows a run down.
REPEATS = 3
# Rows per backfill run (the scale), and the engines measured.
BACKFILL_ROWS = 200_000
BACKFILL_ENGINES = ("dask", "spark")
# Background workers per scenario: one is enough without latency; with 50 ms each worker waits.
WORKERS = {0: 2}
LATENT_WORKERS = 4


@contextmanager
def sink_server() -> Iterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
    process = subprocess.Popen([sys.executable, "-m", "bench.sink", "--port", str(port)], env=env)
    origin = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                raise RuntimeError("the sink server exited at start-up")
            try:
                httpx.get(f"{origin}/_sink/stats", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the sink server did not answer within 20 s") from None
                time.sleep(0.05)
        yield origin
    finally:
        process.terminate()
        process.wait(10)


def set_latency(origin: str, latency_ms: int) -> None:
    httpx.put(f"{origin}/_sink/config", json={"latency_ms": latency_ms}, timeout=5).raise_for_status()


def sink_events(origin: str, provider: str) -> int:
    count: int = httpx.get(f"{origin}/_sink/stats", timeout=5).json()["events"][provider]
    return count


def run_rows(
    console: Console,
    origin: str,
    providers: Sequence[str],
    scenarios: Sequence[int],
    seconds: float,
    profile_dir: Path | None,
) -> list[tuple[int, str, Measurement, float]]:
    results: list[tuple[int, str, Measurement, float]] = []
    for latency in scenarios:
        set_latency(origin, latency)
        for provider in providers:
            pool = event_pool(provider)
            target = Target(origin, provider, seconds)
            workers = WORKERS.get(latency, LATENT_WORKERS)
            rows = rows_for(provider, in_flight=IN_FLIGHT, workers=workers)
            best = best_interleaved(rows, target, pool, origin, latency, profile_dir)
            baseline = best[rows[0][0]].rate
            for key, _ in rows:
                measurement = best[key]
                results.append((latency, provider, measurement, measurement.rate / baseline))
                console.print(
                    f"  {latency:>3} ms  {provider:<5}  {measurement.row:<50} {measurement.rate:>10,.0f} ev/s",
                    highlight=False,
                )
    return results


def best_interleaved(
    rows: Sequence[tuple[str, Any]],
    target: Target,
    pool: Any,
    origin: str,
    latency: int,
    profile_dir: Path | None,
) -> dict[str, Measurement]:
    """The fastest of ``REPEATS`` runs of each row, the runs taken in turns (raw, official, ours, raw, ...).

    Host noise only ever slows a run down, and it comes in spells of seconds: runs of one row taken back
    to back can all fall in one spell while another row's do not, which moves a ratio far more than any
    change of ours. In turns, each row's runs spread over the whole group's time.
    """
    best: dict[str, Measurement] = {}
    for turn in range(REPEATS):
        for key, row in rows:
            profiling = profile_dir is not None and key in ("send", "background", "async")
            if profiling and turn:
                continue  # profiled once
            before = sink_events(origin, target.provider)
            if profile_dir is not None and profiling:
                output = profile_dir / f"{latency}ms-{target.provider}-{key}.txt"
                measurement = profiled(row, target, pool, output)
            else:
                measurement = row(target, pool)
            _check_sink(measurement, origin, target, before)
            if key not in best or measurement.rate > best[key].rate:
                best[key] = measurement
    return best


def _check_sink(measurement: Measurement, origin: str, target: Target, before: int) -> None:
    """After every run: the sink received at least as many events as the run claims."""
    received = sink_events(origin, target.provider) - before
    if received < measurement.events:
        raise RuntimeError(f"{measurement.row}: the sink got {received} of {measurement.events}")


def profiled(row: Any, target: Target, pool: Any, output: Path) -> Measurement:
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    try:
        measurement: Measurement = row(target, pool)
    finally:
        profiler.stop()
    from pyinstrument.renderers import ConsoleRenderer

    tree = profiler.output_text(unicode=True, color=False, show_all=False)
    flat = profiler.output(ConsoleRenderer(unicode=True, flat=True, show_all=True))
    output.write_text(f"{tree}\n\nself time by function:\n{flat}")
    return measurement


def run_module(module: str, *args: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "tests"))
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
    return result


CALLER_ROWS = {
    "track": "billing_events track(), metrics off",
    "track-metrics": "billing_events track(), metrics on (SDK)",
    "posthog": "posthog.capture() (posthog-python)",
    "segment": "analytics.track() (segment-analytics-python)",
}


def caller_costs(origin: str) -> list[dict[str, Any]]:
    """Each caller's-thread row in its own process, the run with the lowest median of ``REPEATS``."""
    rows = []
    for row in CALLER_ROWS:
        runs = [run_module("bench.caller_cost", origin, row) for _ in range(REPEATS)]
        best = min(runs, key=lambda found: float(found["median_us"]))
        if best["sink_received"] < best["sent"]:
            raise RuntimeError(f"{row}: the sink got {best['sink_received']} of {best['sent']} events")
        rows.append(best)
    return rows


def caller_cost_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(
        title="one call on the caller's thread, each sender's worker sending to the same sink"
        f" (lowest median of {REPEATS} runs; ratio to our track() with metrics off)",
        title_justify="left",
    )
    for column, justify in [
        ("call", "left"),
        ("calls", "right"),
        ("median µs", "right"),
        ("p99 µs", "right"),
        ("x median", "right"),
        ("x p99", "right"),
    ]:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    ours = rows[0]
    for found in rows:
        table.add_row(
            CALLER_ROWS[found["row"]],
            f"{found['calls']:,}",
            f"{found['median_us']:.2f}",
            f"{found['p99_us']:.2f}",
            f"{found['median_us'] / ours['median_us']:.1f}x",
            f"{found['p99_us'] / ours['p99_us']:.1f}x",
        )
    return table


def print_caller_costs(console: Console, rows: list[dict[str, Any]]) -> None:
    console.print(caller_cost_table(rows))
    console.print("What each call does on the caller's thread:", highlight=False)
    for found in rows:
        console.print(f"  - {CALLER_ROWS[found['row']]}: {found['does']}.", highlight=False)
    counted = [found for found in rows if "events_counted_by_metrics" in found]
    for found in counted:
        console.print(
            f"  (metrics on: the SDK counted {found['events_counted_by_metrics']:,} events"
            f" of {found['sent']:,} tracked)",
            highlight=False,
        )


# What the hot path runs on: the figures move with these versions.
HOT_PATH_PACKAGES = ("jsonschema-rs", "orjson", "httpx", "httpcore", "h11")


def versions() -> str:
    from importlib import metadata

    found = []
    for name in HOT_PATH_PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def regenerate_seconds() -> float:
    with tempfile.TemporaryDirectory() as output:
        started = time.perf_counter()
        subprocess.run(
            # The generator lives in the dev venv (`make bench` names its python): the bench's own venv holds
            # what a user installs, not the project's tools.
            [
                os.environ.get("REGENERATE_PYTHON", sys.executable),
                str(ROOT / "specs" / "regenerate.py"),
                output,
            ],
            check=True,
            timeout=600,
        )
        return time.perf_counter() - started


def throughput_table(results: list[tuple[int, str, Measurement, float]]) -> Table:
    table = Table(title="throughput (events/s; ratio to the first row of its group)", title_justify="left")
    for column, justify in [
        ("latency", "right"),
        ("provider", "left"),
        ("row", "left"),
        ("events", "right"),
        ("seconds", "right"),
        ("events/s", "right"),
        ("x first row", "right"),
    ]:
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    previous: tuple[int, str] | None = None
    for latency, provider, measurement, ratio in results:
        if previous is not None and previous != (latency, provider):
            table.add_section()
        previous = (latency, provider)
        table.add_row(
            f"{latency} ms",
            provider,
            measurement.row,
            f"{measurement.events:,}",
            f"{measurement.seconds:.2f}",
            f"{measurement.rate:,.0f}",
            f"{ratio:.2f}x",
        )
    return table


def _rate(
    results: list[tuple[int, str, Measurement, float]], latency: int, provider: str, prefix: str
) -> float:
    for row_latency, row_provider, measurement, _ in results:
        if row_latency == latency and row_provider == provider and measurement.row.startswith(prefix):
            return measurement.rate
    return float("nan")


def _best(
    results: list[tuple[int, str, Measurement, float]], latency: int, provider: str, prefix: str
) -> float:
    rates = [
        measurement.rate
        for row_latency, row_provider, measurement, _ in results
        if row_latency == latency and row_provider == provider and measurement.row.startswith(prefix)
    ]
    return max(rates, default=float("nan"))


def run_backfills(console: Console, origin: str, scenarios: Sequence[int]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for latency in scenarios:
        set_latency(origin, latency)
        for engine in BACKFILL_ENGINES:
            console.print(f"  {latency:>3} ms  backfill on {engine}, {BACKFILL_ROWS:,} Lago events …")
            measured = run_module("bench.backfill", engine, origin, str(BACKFILL_ROWS), str(IN_FLIGHT))
            found.append({"latency": latency, **measured})
    return found


def backfill_table(
    backfills: list[dict[str, Any]], results: list[tuple[int, str, Measurement, float]]
) -> Table:
    table = Table(
        title="backfills (Lago, 2 workers, 16 partitions; ratio to the best single-process billing_events row)",
        title_justify="left",
    )
    for column in (
        "latency",
        "engine",
        "events",
        "seconds",
        "events/s",
        "x single process",
        "worker CPU µs/row",
        "peak RSS per worker",
    ):
        table.add_column(column, justify="left" if column == "engine" else "right")
    for row in backfills:
        single = _best(results, row["latency"], "lago", "billing_events")
        peaks = ", ".join(f"{peak:.0f}" for peak in row["worker_peak_rss_mib"])
        table.add_row(
            f"{row['latency']} ms",
            row["engine"],
            f"{row['rows']:,}",
            f"{row['seconds']:.2f}",
            f"{row['rate']:,.0f}",
            f"{row['rate'] / single:.2f}x",
            f"{row['worker_cpu_us_per_row']:.1f}",
            f"{peaks} MiB",
        )
    return table


def spool_table(results: list[tuple[int, str, Measurement, float]], tracks: list[dict[str, Any]]) -> Table:
    """The spool's rows: throughput as a ratio to the in-memory sender, and track() per durability."""
    table = Table(title="durable spool", title_justify="left")
    for column in ("measure", "in memory", "spool", "ratio"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for latency, provider, measurement, _ in results:
        if "spool" not in measurement.row:
            continue
        memory = _rate(results, latency, provider, measurement.row.split(", spool")[0])
        table.add_row(
            f"{provider}, {latency} ms: {measurement.row}",
            f"{memory:,.0f} ev/s",
            f"{measurement.rate:,.0f} ev/s",
            f"{measurement.rate / memory:.2f}x",
        )
    for track in tracks:
        table.add_row(
            f"track() median / p99 / p99.9, {track['durability']} ({track['calls']:,} calls)",
            "",
            f"{track['median_us']:.2f} / {track['p99_us']:.2f} / {track['p999_us']:.0f} µs",
            "",
        )
    return table


# Issue 14's targets: (provider, best row ÷ raw, official batch row, best row ÷ that row), at 0 ms.
THROUGHPUT_TARGETS = [
    ("lago", 0.8, "lago-python-client events.batch_create", 20.0),
    ("togai", 0.6, "togai-client ingest_batch", 5.0),
]
TRACK_MEDIAN_US, TRACK_P99_US, METRICS_EXTRA_US, VS_OTHERS = 4.0, 30.0, 1.0, 10.0


def targets_table(
    results: list[tuple[int, str, Measurement, float]],
    track: dict[str, Any] | None,
    memory: dict[str, Any] | None,
    backfills: Sequence[dict[str, Any]] = (),
    tracks: Sequence[dict[str, Any]] = (),
    callers: Sequence[dict[str, Any]] | None = None,
) -> Table:
    table = Table(title="targets", title_justify="left")
    for column in ("target", "measured", "met"):
        table.add_column(column)

    def check(name: str, value: float, goal: float, unit: str, *, at_most: bool = False) -> None:
        met = value <= goal if at_most else value >= goal
        table.add_row(name, f"{value:,.2f}{unit}", "[green]met[/]" if met else "[red]missed[/]")

    raw, ours, asy = "raw httpx", "billing_events", "billing_events async send()"
    for provider, vs_raw, official, vs_official in THROUGHPUT_TARGETS:
        baseline = _rate(results, 0, provider, raw)
        if baseline != baseline:  # NaN: the scenario was not run
            continue
        best = _best(results, 0, provider, ours)
        check(
            f"{provider}, no latency: best billing_events row ≥ {vs_raw}x raw", best / baseline, vs_raw, "x"
        )
        check(
            f"{provider}, no latency: best billing_events row ≥ {vs_official:g}x {official}",
            best / _rate(results, 0, provider, official),
            vs_official,
            "x",
        )
    for provider in ("togai", "lago"):
        rate = _rate(results, 50, provider, asy)
        if rate == rate:
            check(f"{provider}, 50 ms latency: async ≥ 20,000 events/s", rate, 20_000, " ev/s")
    for row in backfills:
        if row["latency"] == 50:
            check(
                f"lago, 50 ms latency: {row['engine']} backfill ≥ 1.8x the async row",
                row["rate"] / _rate(results, 50, "lago", asy),
                1.8,
                "x",
            )
    if track is not None:
        check(
            f"track() median ≤ {TRACK_MEDIAN_US:g} µs, metrics off",
            track["median_us"],
            TRACK_MEDIAN_US,
            " µs",
            at_most=True,
        )
        check(
            f"track() p99 ≤ {TRACK_P99_US:g} µs, metrics off",
            track["p99_us"],
            TRACK_P99_US,
            " µs",
            at_most=True,
        )
    if callers:
        by_row = {found["row"]: found for found in callers}
        ours_off, ours_on = by_row.get("track"), by_row.get("track-metrics")
        if ours_off is not None and ours_on is not None:
            check(
                f"track() median with metrics on ≤ {METRICS_EXTRA_US:g} µs over metrics off",
                ours_on["median_us"] - ours_off["median_us"],
                METRICS_EXTRA_US,
                " µs",
                at_most=True,
            )
        for other in ("posthog", "segment"):
            if ours_off is not None and other in by_row:
                check(
                    f"track() ≥ {VS_OTHERS:g}x cheaper than {CALLER_ROWS[other]} (median)",
                    by_row[other]["median_us"] / ours_off["median_us"],
                    VS_OTHERS,
                    "x",
                )
    for found in tracks:
        if found["durability"] == "group":
            check("track() with a spool (group): median ≤ 15 µs", found["median_us"], 15, " µs", at_most=True)
            check("track() with a spool (group): p99 ≤ 100 µs", found["p99_us"], 100, " µs", at_most=True)
    for provider in ("togai", "lago"):
        spooled = _rate(results, 0, provider, "billing_events track() + flush, 2 workers, spool")
        if spooled == spooled:
            memory_rate = _rate(results, 0, provider, "billing_events track() + flush")
            check(f"{provider}, no latency: spool ≥ 0.7x in memory", spooled / memory_rate, 0.7, "x")
    if memory is not None:
        check(
            "queue peak RSS delta ≤ bound + 20%",
            memory["peak_delta_mib"] / memory["bound_mib"],
            1.2,
            "x bound",
            at_most=True,
        )
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=1.0,
        help=f"time per run of a throughput row, best of {REPEATS} (default: 1)",
    )
    parser.add_argument("--providers", default="togai,lago")
    parser.add_argument("--scenarios", default="0,50", help="server latencies in ms (default: 0,50)")
    parser.add_argument("--skip-extras", action="store_true", help="only the throughput rows")
    parser.add_argument("--skip-pacing", action="store_true", help="leave out the pacing rows (bench.pacing)")
    parser.add_argument(
        "--backfills",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the Dask and Spark backfill rows (default: on; Lago only)",
    )
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="profile this project's rows with pyinstrument"
    )
    parser.add_argument(
        "--caller-cost-only",
        action="store_true",
        help="only the cost of one call on the caller's thread: ours beside PostHog and Segment",
    )
    parser.add_argument(
        "--recovery-events",
        type=int,
        default=1_000_000,
        help="events a killed sender leaves in its spool for the recovery measurement (default: 1,000,000)",
    )
    args = parser.parse_args(argv)
    providers = [name for name in args.providers.split(",") if name]
    scenarios = [int(value) for value in args.scenarios.split(",") if value]
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    console = Console()
    console = Console(width=max(console.width, 130))
    cpus = os.cpu_count()
    console.print(
        f"server: bench.sink (bare ASGI app, uvicorn with httptools and uvloop, separate process; no schema validation, no storage)"
        f" on this machine ({cpus} CPUs); python {sys.version.split()[0]}; every figure is the best of {REPEATS} runs",
        highlight=False,
    )
    console.print(f"installed: {versions()} ({sys.prefix})", highlight=False)
    with sink_server() as origin:
        if args.caller_cost_only:
            console.print("  measuring the cost of one call: track(), posthog.capture(), analytics.track() …")
            print_caller_costs(console, caller_costs(origin))
            return 0
        results = run_rows(console, origin, providers, scenarios, args.seconds, args.profile)
        backfills = (
            run_backfills(console, origin, scenarios) if args.backfills and "lago" in providers else []
        )
        track = memory = recovery = None
        tracks: list[dict[str, Any]] = []
        regenerate = None
        callers: list[dict[str, Any]] | None = None
        if not args.skip_extras:
            set_latency(origin, 0)
            console.print("  measuring track() cost …")
            # The run with the lowest median, as for the throughput rows.
            track = min(
                (run_module("bench.track_cost", f"{origin}/togai") for _ in range(REPEATS)),
                key=lambda found: float(found["median_us"]),
            )
            console.print("  measuring the cost of one call: track(), posthog.capture(), analytics.track() …")
            callers = caller_costs(origin)
            tracks = [track]
            for durability in ("os", "group", "sync"):
                console.print(f"  measuring track() cost with a spool, durability={durability} …")
                tracks.append(
                    min(
                        (
                            run_module("bench.track_cost", f"{origin}/togai", durability)
                            for _ in range(REPEATS if durability != "sync" else 1)
                        ),
                        key=lambda found: float(found["median_us"]),
                    )
                )
            console.print(f"  measuring recovery of {args.recovery_events:,} spooled events …")
            recovery = run_module("bench.spool_recovery", f"{origin}/togai", str(args.recovery_events))
    if not args.skip_extras:
        console.print("  measuring queue memory with 1,000,000 events …")
        memory = run_module("bench.queue_memory")
        console.print("  timing make regenerate …")
        regenerate = regenerate_seconds()
    console.print(throughput_table(results))
    if backfills:
        console.print(backfill_table(backfills, results))
    if track is not None:
        console.print(
            f"track() on the caller's thread, worker sending ({track['calls']:,} calls, timer overhead"
            f" {track['timer_overhead_ns']} ns removed): median {track['median_us']:.2f} µs,"
            f" p99 {track['p99_us']:.2f} µs, p99.9 {track['p999_us']:.2f} µs, max {track['max_us']:,.0f} µs",
            highlight=False,
        )
    if callers is not None:
        print_caller_costs(console, callers)
    if memory is not None:
        console.print(
            f"queue memory: {memory['events_tracked']:,} events tracked with the worker blocked,"
            f" max_queue_bytes {memory['bound_mib']:.0f} MiB: {memory['queued']:,} queued,"
            f" {memory['dropped']:,} dropped; peak RSS {memory['peak_rss_mib']:.0f} MiB,"
            f" +{memory['peak_delta_mib']:.0f} MiB over the start = {memory['peak_delta_mib'] / memory['bound_mib']:.2f}x"
            f" the bound (mean event {memory['mean_event_json_bytes']:.0f} B of JSON)",
            highlight=False,
        )
    if regenerate is not None:
        console.print(
            f"make regenerate (specs/regenerate.py into a temp dir): {regenerate:.1f} s", highlight=False
        )
    if tracks or any("spool" in measurement.row for _, _, measurement, _ in results):
        console.print(spool_table(results, tracks))
    if recovery is not None:
        console.print(
            f"spool recovery: {recovery['events']:,} events left by a SIGKILLed sender"
            f" ({recovery['bytes_on_disk'] / 2**20:,.0f} MiB on disk, {recovery['bytes_per_event']:.0f} B/event);"
            f" a new sender adopted them in {recovery['adopt_seconds']:.1f} s and re-sent all in"
            f" {recovery['recovery_seconds']:.1f} s ({recovery['events_per_second']:,.0f} events/s)",
            highlight=False,
        )
    console.print(targets_table(results, track, memory, backfills, tracks, callers))
    if not args.skip_pacing:
        console.print(pacing.measure(console, providers, pacing.DEFAULT_SECONDS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
