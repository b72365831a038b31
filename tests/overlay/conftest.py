from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from billing_events import metrics

CANARY = "canary-token-9f8e7d6c5b4a"


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    """The library's metrics, read in memory from an OpenTelemetry SDK provider set for one test."""
    found = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[found])
    metrics.use_meter_provider(provider)
    try:
        yield found
    finally:
        metrics.use_meter_provider(None)
        provider.shutdown()
