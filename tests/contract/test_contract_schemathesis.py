"""Schemathesis runs of both specs: examples, coverage and fuzzing per operation, then Lago's linked scenarios.

Against the in-process mock by default; `make contract` points them at real servers (see contract_targets.py).
Check tuning lives in schemathesis.toml next to this file.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import schemathesis

from .contract_targets import load_schema, record_case, resolve_targets, schemathesis_config

TARGETS = resolve_targets(os.environ)
CONFIG = schemathesis_config(TARGETS)
TOGAI = load_schema(TARGETS["togai"], CONFIG)
LAGO = load_schema(TARGETS["lago"], CONFIG)


@TOGAI.parametrize()
def test_togai_contract(case: schemathesis.Case[Any]) -> None:
    record_case("togai", case)
    case.call_and_validate()


@LAGO.parametrize()
def test_lago_contract(case: schemathesis.Case[Any]) -> None:
    record_case("lago", case)
    case.call_and_validate()


def _with_suffix(event: Any, suffix: str) -> None:
    transaction_id = event.get("transaction_id") if isinstance(event, dict) else None
    # Only non-empty strings: an empty id is an invalid case that must stay invalid.
    if isinstance(transaction_id, str) and transaction_id:
        event["transaction_id"] = f"{transaction_id}{suffix}"


class LagoScenarios(LAGO.as_state_machine()):  # type: ignore[misc]
    """createEvent / createBatchEvents followed by findEvent through the spec's links.

    Hypothesis replays scenarios, so each must start from the same state: the mock is reset, and a real
    server gets transaction ids unique to the scenario (ids repeated inside a scenario stay repeated).
    Togai has no operation that reads anything back, hence no links and no stateful run.
    """

    def setup(self) -> None:
        self.suffix = f"-{uuid.uuid4().hex[:12]}"
        app = TARGETS["lago"].app
        if app is not None:
            app.state.mock.reset()

    def before_call(self, case: schemathesis.Case[Any]) -> None:
        body = case.body
        if TARGETS["lago"].is_remote and isinstance(body, dict):
            _with_suffix(body.get("event"), self.suffix)
            events = body.get("events")
            for event in events if isinstance(events, list) else []:
                _with_suffix(event, self.suffix)

    def after_call(self, response: schemathesis.Response, case: schemathesis.Case[Any]) -> None:
        super().after_call(response, case)
        record_case("lago", case)


TestLagoScenarios = LagoScenarios.TestCase
