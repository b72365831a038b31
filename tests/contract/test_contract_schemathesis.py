"""Schemathesis runs of both specs: examples, coverage and fuzzing per operation, then Lago's linked scenarios.

Against the in-process mock by default; `make contract` points them at real servers (see contract_targets.py).
Check tuning lives in schemathesis.toml next to this file.

In-process, Lago runs twice: fully against the mock's Postgres store, and against its ClickHouse store for the
operations whose answers depend on the store (the writes and findEvent, and their linked scenarios), with
fewer cases, so the whole run stays near its one-store time.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import attrs
import schemathesis
from hypothesis import settings

from billing_events.mock.testing import mock_app

from .contract_targets import MOCK_TOKEN, load_schema, record_case, resolve_targets, schemathesis_config

TARGETS = resolve_targets(os.environ)
CONFIG = schemathesis_config(TARGETS)
TOGAI = load_schema(TARGETS["togai"], CONFIG)
LAGO = load_schema(TARGETS["lago"], CONFIG)
# The second Lago store only exists in-process; a real server is whichever store its organization runs on.
CLICKHOUSE_TARGET = (
    None
    if TARGETS["lago"].is_remote
    else attrs.evolve(TARGETS["lago"], app=mock_app("clickhouse", token=MOCK_TOKEN))
)
# estimate_fees stores nothing, so its answers do not depend on the store.
CLICKHOUSE_CASES = settings(max_examples=25)


@TOGAI.parametrize()
def test_togai_contract(case: schemathesis.Case[Any]) -> None:
    record_case("togai", case)
    case.call_and_validate()


@LAGO.parametrize()
def test_lago_contract(case: schemathesis.Case[Any]) -> None:
    record_case("lago", case)
    case.call_and_validate()


if CLICKHOUSE_TARGET is not None:
    LAGO_CLICKHOUSE = load_schema(CLICKHOUSE_TARGET, CONFIG).exclude(operation_id="eventEstimateFees")

    @LAGO_CLICKHOUSE.parametrize()
    @CLICKHOUSE_CASES
    def test_lago_clickhouse_contract(case: schemathesis.Case[Any]) -> None:
        record_case("lago-clickhouse", case)
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

    target = TARGETS["lago"]

    def setup(self) -> None:
        self.suffix = f"-{uuid.uuid4().hex[:12]}"
        app = self.target.app
        if app is not None:
            app.state.mock.reset()

    def before_call(self, case: schemathesis.Case[Any]) -> None:
        body = case.body
        if self.target.is_remote and isinstance(body, dict):
            _with_suffix(body.get("event"), self.suffix)
            events = body.get("events")
            for event in events if isinstance(events, list) else []:
                _with_suffix(event, self.suffix)

    def after_call(self, response: schemathesis.Response, case: schemathesis.Case[Any]) -> None:
        super().after_call(response, case)
        record_case("lago", case)


TestLagoScenarios = LagoScenarios.TestCase

if CLICKHOUSE_TARGET is not None:

    class LagoClickhouseScenarios(LAGO_CLICKHOUSE.as_state_machine()):  # type: ignore[misc]
        """The same linked scenarios on the ClickHouse store, where a repeated event is answered 200."""

        target = CLICKHOUSE_TARGET

        setup = LagoScenarios.setup
        before_call = LagoScenarios.before_call

        def after_call(self, response: schemathesis.Response, case: schemathesis.Case[Any]) -> None:
            super().after_call(response, case)
            record_case("lago-clickhouse", case)

    TestLagoClickhouseScenarios = LagoClickhouseScenarios.TestCase
    TestLagoClickhouseScenarios.settings = settings(TestLagoClickhouseScenarios.settings, max_examples=25)
