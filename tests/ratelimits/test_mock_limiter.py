"""The mock's rate limiter: answers and headers under, at and over the budget, and its counters."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from overlay.scripted import lago_event, togai_event

from billing_events.mock import MockConfig, create_app
from billing_events.mock.ratelimit import RateLimitConfig, RateLimiter
from billing_events.mock.testing import sync_transport

AUTH = {"Authorization": "Bearer test-token"}


@pytest.fixture
def mock() -> Iterator[httpx.Client]:
    # Two requests per second: the test runs far faster than the bucket refills a token.
    limits = RateLimitConfig(enabled=True, limits={"lago.create_batch_events": 2, "togai.ingest_batch": 2})
    app = create_app(MockConfig(rate_limits=limits))
    with httpx.Client(transport=sync_transport(app), base_url="http://mock") as client:
        yield client


def lago_batch(client: httpx.Client, n: int) -> httpx.Response:
    return client.post("/lago/api/v1/events/batch", headers=AUTH, json={"events": [lago_event(n)]})


def test_lago_under_at_and_over_the_budget(mock: httpx.Client) -> None:
    under, at, over = (lago_batch(mock, n) for n in range(3))

    assert under.status_code == 200
    assert (under.headers["x-ratelimit-limit"], under.headers["x-ratelimit-remaining"]) == ("2", "1")
    assert under.headers["x-ratelimit-reset"] == "1"  # whole seconds until the bucket is full again
    assert "retry-after" not in under.headers
    assert at.status_code == 200
    assert at.headers["x-ratelimit-remaining"] == "0"
    assert over.status_code == 429
    assert over.json()["error"] == "Too Many Requests"
    # Lago's 429 names its wait in X-RateLimit-Reset alone, as its rate-limit page documents.
    assert "retry-after" not in over.headers
    assert over.headers["x-ratelimit-reset"] == "1"
    assert (over.headers["x-ratelimit-limit"], over.headers["x-ratelimit-remaining"]) == ("2", "0")
    # A refused request stored nothing.
    assert mock.get("/_mock/stats").json()["lago"]["stored"] == 2


def test_togai_over_the_budget_gets_retry_after_only(mock: httpx.Client) -> None:
    answers = [
        mock.post("/togai/ingestBatch", headers=AUTH, json={"events": [togai_event(n, id=f"t-{n}")]})
        for n in range(3)
    ]

    assert [answer.status_code for answer in answers] == [202, 202, 429]
    assert answers[2].headers["retry-after"] == "1"
    assert not any(name.startswith("x-ratelimit") for answer in answers for name in answer.headers)


def test_each_endpoint_group_has_its_own_bucket(mock: httpx.Client) -> None:
    for n in range(3):
        lago_batch(mock, n)

    single = mock.post("/lago/api/v1/events", headers=AUTH, json={"event": lago_event(9)})

    assert single.status_code == 200
    assert single.headers["x-ratelimit-limit"] == "500"


def test_counters_per_second_and_group(mock: httpx.Client) -> None:
    for n in range(3):
        lago_batch(mock, n)

    seconds = mock.get("/_mock/rate_limits").json()["seconds"].values()

    counts = [
        groups["lago.create_batch_events"] for groups in seconds if "lago.create_batch_events" in groups
    ]
    assert sum(count["accepted"] for count in counts) == 2
    assert sum(count["throttled"] for count in counts) == 1


def test_switched_off_there_are_no_limits_and_no_headers(mock: httpx.Client) -> None:
    mock.put("/_mock/rate_limits", json={"enabled": False}).raise_for_status()

    answers = [lago_batch(mock, n) for n in range(5)]

    assert {answer.status_code for answer in answers} == {200}
    assert "x-ratelimit-limit" not in answers[0].headers


def test_off_unless_asked_and_published_limits_by_default() -> None:
    app = create_app()
    with httpx.Client(transport=sync_transport(app), base_url="http://mock") as client:
        settings = client.get("/_mock/rate_limits").json()["config"]
        assert [lago_batch(client, n).status_code for n in range(60)] == [200] * 60
    assert settings["enabled"] is False
    assert settings["limits"]["lago.create_event"] == 500
    assert settings["limits"]["togai.ingest_batch"] == 50


def test_a_bad_setting_is_refused_with_its_name(mock: httpx.Client) -> None:
    answer = mock.put("/_mock/rate_limits", json={"limits": {"lago.create_batch_events": -1}})

    assert answer.status_code == 400
    assert "limits.lago.create_batch_events" in answer.text


def test_the_bucket_refills_at_the_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(RateLimitConfig(enabled=True, limits={"togai.ingest": 10}), clock=lambda: now[0])

    first = [limiter.admit("t", "togai.ingest") for _ in range(11)]
    now[0] = 0.5
    later = [limiter.admit("t", "togai.ingest") for _ in range(6)]

    assert [verdict.allowed for verdict in first if verdict] == [True] * 10 + [False]
    assert [verdict.allowed for verdict in later if verdict] == [True] * 5 + [False]
    # Another token (organization) has a bucket of its own.
    assert limiter.admit("other", "togai.ingest").allowed  # type: ignore[union-attr]
