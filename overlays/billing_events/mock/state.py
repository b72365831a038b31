"""Everything one mock instance remembers; lives on `app.state.mock`."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from billing_events.mock.catalogue import Catalogue
from billing_events.mock.config import MockConfig
from billing_events.mock.errors import Provider
from billing_events.mock.faults import FaultInjector
from billing_events.mock.schemas import SpecRules
from billing_events.mock.stores import AnyLagoStore, TogaiStore, new_lago_store


@functools.cache
def rules_for(specs_dir: Path) -> SpecRules:
    """Specs are read once per process: compiled validators are immutable and shared by every app."""
    return SpecRules.load(specs_dir)


class MockState:
    def __init__(self, config: MockConfig) -> None:
        self.config = config
        self.rules = rules_for(config.specs_dir.resolve())
        self.catalogue = Catalogue.load(config.catalogue_path)
        self.faults = FaultInjector(config.faults)
        self.togai = TogaiStore(config.max_events)
        self.lago: AnyLagoStore = new_lago_store(config.lago_store, config.token, config.max_events)

    def store_of(self, provider: Provider) -> TogaiStore | AnyLagoStore:
        return self.togai if provider is Provider.TOGAI else self.lago

    def reset(self) -> None:
        """Forget events and counters, restore the start-up faults and Lago store; each store is swapped whole."""
        self.togai = TogaiStore(self.config.max_events)
        self.lago = new_lago_store(self.config.lago_store, self.config.token, self.config.max_events)
        self.faults.reset()

    def switch_lago_store(self, kind: str) -> None:
        """Behave like the other Lago event store from now on; the Lago events stored so far are forgotten."""
        self.lago = new_lago_store(kind, self.config.token, self.config.max_events)

    def stats(self) -> dict[str, Any]:
        lago = self.lago
        return {"togai": self.togai.stats().to_dict(), "lago": {**lago.stats().to_dict(), "store": lago.kind}}
