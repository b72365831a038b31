"""Write a realistic usage-event file for Togai or Lago (JSONL, or CSV in the CLI's column layout).

Events come from a few dozen customers over the last day, in time order, with
metric-specific measurements and labels. They carry no idempotency key: the
``billing-events`` CLI derives one from the file and the line. The output is
reproducible for a ``--seed``, except that the window ends now.

    python tests/demo/generate_events.py togai 30000 togai-events.jsonl
    python tests/demo/generate_events.py lago 30000 lago-events.csv --seed 7
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

ACCOUNTS = [
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "wonka",
    "tyrell",
    "cyberdyne",
    "soylent",
    "massive-dynamic",
    "aperture",
    "black-mesa",
    "oscorp",
    "vandelay",
    "pied-piper",
    "dunder-mifflin",
    "gringotts",
    "monarch",
]
PLANS = ["starter", "growth", "enterprise"]
REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1"]
ENDPOINTS = ["/v1/search", "/v1/orders", "/v1/users", "/v1/reports", "/v2/ingest"]
INSTANCE_TYPES = ["small", "medium", "large", "gpu"]


def _plan(account: str) -> str:
    return PLANS[sum(map(ord, account)) % len(PLANS)]


def _moments(count: int, rng: random.Random, *, hours: float = 24.0) -> Iterator[dt.datetime]:
    """Sorted instants over the last ``hours``, denser during working hours."""
    end = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = end - dt.timedelta(hours=hours)
    span = (end - start).total_seconds()
    offsets = sorted(span * rng.betavariate(2.0, 1.6) for _ in range(count))
    for offset in offsets:
        yield start + dt.timedelta(seconds=offset, milliseconds=rng.randrange(1000))


def togai_events(count: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    for moment in _moments(count, rng):
        account = rng.choice(ACCOUNTS)
        region = rng.choice(REGIONS)
        dimensions = {"region": region, "plan": _plan(account)}
        kind = rng.choices(["api_calls", "storage", "compute", "data_transfer"], weights=[60, 10, 20, 10])[0]
        if kind == "api_calls":
            attributes = [
                {"name": "calls", "value": "1"},
                {"name": "response_bytes", "value": str(rng.randrange(200, 250_000)), "unit": "None"},
                {"name": "duration", "value": f"{rng.lognormvariate(3.5, 0.6):.1f}", "unit": "Milliseconds"},
            ]
            dimensions["endpoint"] = rng.choice(ENDPOINTS)
            dimensions["status"] = rng.choices(["2xx", "4xx", "5xx"], weights=[94, 5, 1])[0]
        elif kind == "storage":
            attributes = [{"name": "stored", "value": f"{rng.uniform(0.1, 500):.3f}", "unit": "Kilograms"}]
            dimensions["tier"] = rng.choice(["hot", "cold", "archive"])
        elif kind == "compute":
            attributes = [
                {"name": "cpu_time", "value": f"{rng.uniform(0.5, 3600):.2f}", "unit": "Seconds"},
                {"name": "memory_gb_hours", "value": f"{rng.uniform(0.01, 64):.4f}"},
            ]
            dimensions["instance_type"] = rng.choice(INSTANCE_TYPES)
        else:
            attributes = [{"name": "bytes_out", "value": str(rng.randrange(1_000, 5_000_000_000))}]
            dimensions["destination"] = rng.choice(["internet", "same-region", "cross-region"])
        yield {
            "schemaName": kind,
            "timestamp": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "accountId": f"acct_{account}",
            "attributes": attributes,
            "dimensions": dimensions,
        }


def lago_events(count: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    for moment in _moments(count, rng):
        account = rng.choice(ACCOUNTS)
        code = rng.choices(["api_calls", "storage_gb", "seats", "compute_seconds"], weights=[60, 15, 5, 20])[
            0
        ]
        region = rng.choice(REGIONS)
        event: dict[str, Any] = {
            "external_subscription_id": f"sub_{account}_{_plan(account)}",
            "code": code,
            # Lago takes Unix seconds: whole, or as a string with milliseconds.
            "timestamp": f"{moment.timestamp():.3f}" if rng.random() < 0.5 else int(moment.timestamp()),
        }
        if code == "api_calls":
            event["properties"] = {"endpoint": rng.choice(ENDPOINTS), "region": region}
        elif code == "storage_gb":
            event["properties"] = {"gb": round(rng.uniform(0.1, 2_000), 3), "region": region}
        elif code == "seats":
            event["properties"] = {"seats": rng.choice([1, 1, 1, 2, 5, -1])}
        else:
            event["properties"] = {
                "seconds": round(rng.uniform(1, 7200), 2),
                "instance_type": rng.choice(INSTANCE_TYPES),
            }
            if rng.random() < 0.1:
                event["precise_total_amount_cents"] = f"{rng.uniform(1, 5000):.2f}"
        yield event


def _write_csv(path: Path, provider: str, events: Iterator[dict[str, Any]]) -> int:
    rows: list[dict[str, str]] = []
    columns: dict[str, None] = {}
    for event in events:
        row: dict[str, str] = {}
        if provider == "togai":
            for name in ("schemaName", "timestamp", "accountId"):
                row[name] = str(event[name])
            for attribute in event["attributes"]:
                row[f"attr.{attribute['name']}"] = attribute["value"]
                if "unit" in attribute:
                    row[f"unit.{attribute['name']}"] = attribute["unit"]
            for name, value in event["dimensions"].items():
                row[f"dim.{name}"] = value
        else:
            for name in ("external_subscription_id", "code", "timestamp", "precise_total_amount_cents"):
                if name in event:
                    row[name] = str(event[name])
            for name, value in (event.get("properties") or {}).items():
                row[f"prop.{name}"] = str(value)
        columns.update(dict.fromkeys(row))
        rows.append(row)
    with path.open("w", newline="", encoding="utf-8") as target:
        writer = csv.DictWriter(target, fieldnames=list(columns), restval="")
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def write_events(provider: str, count: int, path: Path, *, seed: int = 1) -> int:
    rng = random.Random(seed)
    events = togai_events(count, rng) if provider == "togai" else lago_events(count, rng)
    if path.suffix == ".csv":
        return _write_csv(path, provider, events)
    with path.open("wb") as target:
        for event in events:
            target.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
    return count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("provider", choices=("togai", "lago"))
    parser.add_argument("count", type=int)
    parser.add_argument(
        "output", type=Path, help="file to write; a .csv name writes CSV, anything else JSONL"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    written = write_events(args.provider, args.count, args.output, seed=args.seed)
    print(f"wrote {written:,} {args.provider} events to {args.output}")


if __name__ == "__main__":
    main()
