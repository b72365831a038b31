"""What the command line needs to know about each provider."""

from __future__ import annotations

from attrs import frozen

from .. import _constants as C
from ..providers import LagoRules, ProviderRules, TogaiRules
from . import _csv
from ._input import HeaderCheck, RowMapper


@frozen
class Provider:
    name: str
    title: str
    key_field: str
    # A field that scopes the key's uniqueness (Lago: per subscription); None when keys are global.
    key_scope: str | None
    # Lago stamps a missing timestamp with the time it receives the event, so a re-send would differ.
    stamps_missing_timestamp: bool
    batch_limit: int
    token_env: str
    url_env: str
    endpoints: tuple[str, ...]
    rules_type: type[ProviderRules]
    max_batch_bytes: int
    csv_header_problems: HeaderCheck
    csv_row_to_event: RowMapper

    def rules(self, max_batch_events: int) -> ProviderRules:
        """The overlay's own spec check and chunking, so a dry run refuses exactly what a send would."""
        return self.rules_type(max_batch_events, self.max_batch_bytes)


TOGAI = Provider(
    name="togai",
    title="Togai",
    key_field="id",
    key_scope=None,
    stamps_missing_timestamp=False,
    batch_limit=C.TOGAI_MAX_BATCH_EVENTS,
    token_env="TOGAI_API_TOKEN",
    url_env="TOGAI_BASE_URL",
    endpoints=("production", "sandbox"),
    rules_type=TogaiRules,
    max_batch_bytes=C.TOGAI_MAX_BODY_BYTES,
    csv_header_problems=_csv.togai_header_problems,
    csv_row_to_event=_csv.togai_row_to_event,
)

LAGO = Provider(
    name="lago",
    title="Lago",
    key_field="transaction_id",
    key_scope="external_subscription_id",
    stamps_missing_timestamp=True,
    batch_limit=C.LAGO_MAX_BATCH_EVENTS,
    token_env="LAGO_API_KEY",
    url_env="LAGO_API_URL",
    endpoints=("us", "eu"),
    rules_type=LagoRules,
    max_batch_bytes=C.LAGO_MAX_BODY_BYTES,
    csv_header_problems=_csv.lago_header_problems,
    csv_row_to_event=_csv.lago_row_to_event,
)

PROVIDERS = {provider.name: provider for provider in (TOGAI, LAGO)}
# The rate budget a run shares with others when --rate-budget is not given.
RATE_BUDGET_ENV = "BILLING_EVENTS_RATE_BUDGET"
# How to send an event held back past the provider's window for repeated keys (ingest and replay).
PAST_WINDOW_REMEDY = "check it on the provider's side, then --resend-past-window"
