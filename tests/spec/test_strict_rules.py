"""The overlay refuses more than the servers only where `x-overlay-strict` says so, each rule with its reason.

The specs (and so the mock and schemathesis) accept what the servers accept; the overlay's schema bundles carry
the stricter rules, which `specs/regenerate.py` applies.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from billing_events import InvalidEventError, Lago, Togai
from billing_events.mock.schemas import compile_component, load_spec

ROOT = Path(__file__).resolve().parents[2]


def _regenerate_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("specs_regenerate", ROOT / "specs" / "regenerate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("specs_regenerate", module)
    spec.loader.exec_module(module)
    return module


REGENERATE = _regenerate_module()


def lago_event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "transaction_id": "txn_1",
        "external_subscription_id": "sub_acme_growth",
        "code": "api_calls",
        "timestamp": 1714558530,
    }
    event.update(changes)
    return {key: value for key, value in event.items() if value is not ...}


def togai_event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "schemaName": "api_calls",
        "id": "evt_1",
        "timestamp": "2024-05-01T10:15:30Z",
        "accountId": "acme",
        "attributes": [],
        "dimensions": {},
    }
    event.update(changes)
    return event


# (provider, event the server accepts, the field the overlay's error names)
STRICTER = [
    pytest.param("lago", lago_event(colour="red"), "colour", id="lago-unknown-key"),
    pytest.param(
        "lago", lago_event(external_subscription_id=...), "external_subscription_id", id="lago-no-sub"
    ),
    pytest.param(
        "lago", lago_event(external_subscription_id=""), "external_subscription_id", id="lago-empty-sub"
    ),
    pytest.param(
        "lago", lago_event(external_subscription_id=None), "external_subscription_id", id="lago-null-sub"
    ),
    pytest.param(
        "lago", lago_event(precise_total_amount_cents="12,50"), "precise_total_amount_cents", id="lago-amount"
    ),
    pytest.param("togai", togai_event(id=""), "id", id="togai-empty-id"),
    pytest.param("togai", togai_event(timestamp="2024-05-01T10:15:30"), "timestamp", id="togai-no-offset"),
]
DEFINITION = {"lago": "EventInputObject", "togai": "Event"}


@pytest.mark.parametrize(("provider", "event", "field"), STRICTER)
def test_the_spec_accepts_what_the_overlay_refuses(provider: str, event: dict[str, Any], field: str) -> None:
    server = compile_component(load_spec(ROOT / "specs" / f"{provider}.yaml"), DEFINITION[provider])
    assert server.is_valid(event)

    client = Lago("t") if provider == "lago" else Togai("t")
    with pytest.raises(InvalidEventError) as caught:
        client.validate(event)

    # A broken rule on a field names it in the path; a missing or unexpected key is named in the message.
    assert caught.value.field in (f"event.{field}", "event")
    assert field in str(caught.value)


@pytest.mark.parametrize(
    ("provider", "event"),
    [
        pytest.param("lago", lago_event(timestamp=1714558530.25), id="lago-float-timestamp"),
        pytest.param(
            "lago", lago_event(properties={"on": True, "none": None, "tags": ["a"]}), id="lago-any-json"
        ),
        pytest.param("lago", lago_event(precise_total_amount_cents=12.5), id="lago-numeric-precise"),
        pytest.param("togai", togai_event(timestamp="2024-05-01T10:15:30+02:00"), id="togai-offset"),
    ],
)
def test_the_overlay_takes_what_the_server_bills_correctly(provider: str, event: dict[str, Any]) -> None:
    client = Lago("t") if provider == "lago" else Togai("t")

    assert client.validate(event) == event


def test_every_strict_rule_has_a_reason_and_appears_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rules = [
        (provider, path, reason)
        for provider in ("togai", "lago")
        for path, reason, _keywords in REGENERATE.strict_rules(load_spec(ROOT / "specs" / f"{provider}.yaml"))
    ]

    assert len(rules) == 7
    for provider, path, reason in rules:
        assert reason.strip(), f"{provider} {path}: a strict rule needs its reason"
        schema_name = path.split("/")[3]
        assert f"`{schema_name}`" in readme, (
            f"README: the strict-rules table must list {provider} {schema_name}"
        )


def test_strict_rules_replace_the_keywords_they_name_and_keep_the_reason() -> None:
    node = {
        "type": "object",
        "additionalProperties": True,
        "properties": {
            "id": {"type": "string", "x-overlay-strict": [{"reason": "r2", "set": {"minLength": 1}}]}
        },
        "x-overlay-strict": [{"reason": "r1", "set": {"additionalProperties": False}}],
    }

    strict = REGENERATE.apply_strict_rules(node)

    assert strict == {
        "type": "object",
        "additionalProperties": False,
        "$comment": "Overlay rule: r1",
        "properties": {"id": {"type": "string", "minLength": 1, "$comment": "Overlay rule: r2"}},
    }
    assert "minLength" not in node["properties"]["id"]
