"""Print how fast the mock validates batches: `python tests/bench/mock_validation.py` (PYTHONPATH=tests).

Three figures per provider: schema validation alone, JSON decoding plus validation, and a whole in-process
request (auth, decoding, validation, storage, answer) through `sync_transport`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from billing_events.mock import MockConfig, create_app
from billing_events.mock.config import DEFAULT_SPECS_DIR, DEFAULT_TOKEN
from billing_events.mock.jsonio import dump_json, parse_json
from billing_events.mock.schemas import SpecRules
from billing_events.mock.testing import sync_transport

TOGAI_BATCH = 500
LAGO_BATCH = 100
ROUNDS = 40


def togai_events(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "schemaName": "api_calls",
            "id": f"evt_{start + n:09d}",
            "timestamp": "2024-05-01T10:15:30.250Z",
            "accountId": f"account-{n % 17}",
            "attributes": [
                {"name": "calls", "value": "1"},
                {"name": "bytes", "value": "2048.5", "unit": "None"},
            ],
            "dimensions": {"region": "eu-west-1", "plan": "growth"},
        }
        for n in range(count)
    ]


def lago_events(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "transaction_id": f"txn_{start + n:09d}",
            "external_subscription_id": f"sub_{n % 13}",
            "code": "storage_gb",
            "timestamp": 1714558530 + n,
            "properties": {"gb": 12.5, "region": "eu-west-1"},
        }
        for n in range(count)
    ]


def events_per_second(events_per_round: int, run_round: Callable[[int], object]) -> float:
    run_round(-1)  # warm-up: compiled regexes, caches, first allocation
    started = time.perf_counter()
    for number in range(ROUNDS):
        run_round(number)
    return events_per_round * ROUNDS / (time.perf_counter() - started)


def report(label: str, rate: float, batch: int) -> None:
    print(f"{label:<58} {rate:>12,.0f} events/s  ({batch / rate * 1000:7.2f} ms per batch)")


def main() -> None:
    rules = SpecRules.load(DEFAULT_SPECS_DIR)
    togai_batch = togai_events(TOGAI_BATCH)
    lago_batch = lago_events(LAGO_BATCH)
    togai_body = dump_json({"events": togai_batch})
    lago_body = dump_json({"events": lago_batch})

    def togai_validate(_round: int) -> object:
        return all(rules.togai.event.is_valid(event) for event in togai_batch)

    def lago_validate(_round: int) -> object:
        return all(rules.lago.event.is_valid(event) for event in lago_batch)

    def togai_decode_validate(_round: int) -> object:
        decoded = parse_json(togai_body)
        assert isinstance(decoded, dict)
        return all(rules.togai.event.is_valid(event) for event in decoded["events"])

    def lago_decode_validate(_round: int) -> object:
        decoded = parse_json(lago_body)
        assert isinstance(decoded, dict)
        return all(rules.lago.event.is_valid(event) for event in decoded["events"])

    app = create_app(MockConfig())
    client = httpx.Client(
        transport=sync_transport(app),
        base_url="http://mock",
        headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"},
    )

    def togai_request(number: int) -> object:
        # Fresh ids each round, so every event is stored rather than counted as a duplicate.
        response = client.post(
            "/togai/ingestBatch", json={"events": togai_events(TOGAI_BATCH, (number + 1) * 10_000)}
        )
        assert response.status_code == 202, response.text
        return response

    def lago_request(number: int) -> object:
        response = client.post(
            "/lago/api/v1/events/batch", json={"events": lago_events(LAGO_BATCH, (number + 1) * 10_000)}
        )
        assert response.status_code == 200, response.text
        return response

    print(
        f"Batch validation throughput, {ROUNDS} rounds each (body: Togai {len(togai_body):,} B, Lago {len(lago_body):,} B)"
    )
    report(
        f"Togai, {TOGAI_BATCH}-event batch, schema validation",
        events_per_second(TOGAI_BATCH, togai_validate),
        TOGAI_BATCH,
    )
    report(
        f"Togai, {TOGAI_BATCH}-event batch, JSON decode + validation",
        events_per_second(TOGAI_BATCH, togai_decode_validate),
        TOGAI_BATCH,
    )
    report(
        f"Togai, {TOGAI_BATCH}-event batch, whole in-process request",
        events_per_second(TOGAI_BATCH, togai_request),
        TOGAI_BATCH,
    )
    report(
        f"Lago, {LAGO_BATCH}-event batch, schema validation",
        events_per_second(LAGO_BATCH, lago_validate),
        LAGO_BATCH,
    )
    report(
        f"Lago, {LAGO_BATCH}-event batch, JSON decode + validation",
        events_per_second(LAGO_BATCH, lago_decode_validate),
        LAGO_BATCH,
    )
    report(
        f"Lago, {LAGO_BATCH}-event batch, whole in-process request",
        events_per_second(LAGO_BATCH, lago_request),
        LAGO_BATCH,
    )
    client.close()


if __name__ == "__main__":
    main()
