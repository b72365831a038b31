"""Helpers shared by the mock's behaviour tests: sample events and spec-derived response checks."""

from __future__ import annotations

import functools
from typing import Any

import jsonschema_rs

from billing_events.mock.schemas import compile_component, load_spec

from .contract_targets import ROOT

TOKEN = "behaviour-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TOGAI = "/togai"
LAGO = "/lago/api/v1"


def togai_event(number: int = 1, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "schemaName": "api_calls",
        "id": f"evt_{number}",
        "timestamp": "2024-05-01T10:15:30Z",
        "accountId": "acme-corp",
        "attributes": [{"name": "calls", "value": "1"}],
        "dimensions": {"region": "eu-west-1"},
    }
    event.update(changes)
    return event


def lago_event(number: int = 1, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "transaction_id": f"txn_{number}",
        "external_subscription_id": "sub_acme_growth",
        "code": "storage_gb",
        "timestamp": 1714558530,
        "properties": {"gb": 12.5},
    }
    event.update(changes)
    return event


def seats_event(
    transaction_id: str = "t-1", subscription: str = "sub_a", code: str = "seats"
) -> dict[str, Any]:
    """A Lago event named by its key, subscription and code: the review tests of the Lago store."""
    return {
        "transaction_id": transaction_id,
        "external_subscription_id": subscription,
        "code": code,
        "timestamp": 1714558530,
        "properties": {"seats": 1},
    }


@functools.cache
def _validator(provider: str, component: str) -> jsonschema_rs.Validator:
    return compile_component(load_spec(ROOT / "specs" / f"{provider}.yaml"), component)


def assert_matches(provider: str, component: str, body: object) -> None:
    """The body is valid under the named component schema of the provider's spec."""
    errors = [error.message for error in _validator(provider, component).iter_errors(body)]
    assert not errors, f"{component}: {errors}"
