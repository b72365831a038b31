"""Put the mock's own count of stored events beside what the CLI sent; exit 1 if they differ.

python tests/demo/compare.py http://127.0.0.1:8910 togai=togai-report.json lago=lago-report.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import orjson
from rich.console import Console
from rich.table import Table


def main(argv: list[str]) -> int:
    origin, *pairs = argv
    stats = httpx.get(f"{origin}/_mock/stats", timeout=10).json()
    faults = httpx.get(f"{origin}/_mock/faults", timeout=10).json()
    table = Table(title="sent by billing-events vs stored by the mock", title_justify="left")
    for column in ("provider", "lines sent", "delivered", "stored by mock", "duplicates", "requests"):
        table.add_column(column, justify="left" if column == "provider" else "right")
    table.add_column("match")
    all_match = True
    for pair in pairs:
        provider, _, report_path = pair.partition("=")
        report = orjson.loads(Path(report_path).read_bytes())
        counts = report["counts"]
        delivered = counts["delivered"] + counts["duplicate"]
        stored = stats[provider]["stored"]
        match = stored == report["records"] == delivered
        all_match &= match
        table.add_row(
            provider,
            f"{report['records']:,}",
            f"{delivered:,}",
            f"{stored:,}",
            f"{stats[provider]['duplicates']:,}",
            f"{stats[provider]['requests']:,}",
            "[green]yes[/]" if match else "[red]NO[/]",
        )
    console = Console()
    console = Console(width=max(console.width, 100))
    console.print(table)
    console.print(
        "delivered: the CLI's count; duplicates: events re-sent after a lost response, which the mock"
        " recognised by their keys and did not store twice",
        highlight=False,
    )
    rates = ", ".join(
        f"{name.removeprefix('rate_')} {value:.0%}"
        for name, value in faults.items()
        if name.startswith("rate_") and value
    )
    console.print(f"faults injected by the mock: {rates or 'none'}", highlight=False)
    if not all_match:
        console.print("[red]the mock's count differs from what was sent[/]")
    return 0 if all_match else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
