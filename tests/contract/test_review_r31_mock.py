"""Review r31 of the mock as users test with it: odd input, admin routes, faults beside rate limits, fixtures.

Each test is a strict xfail: it fails on the code it was written against, for the reason in its marker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette

from billing_events.mock import FaultConfig, MockConfig, ProviderMock, create_app
from billing_events.mock.bodies import DRAIN_LIMIT
from billing_events.mock.ratelimit import RateLimitConfig
from billing_events.mock.testing import async_transport

from .mock_support import AUTH, LAGO, TOGAI, TOKEN, lago_event, seats_event, togai_event

MOCK_FAILED = "could not handle"
STOP_TIMEOUT = 15.0


def _post_json(client: httpx.Client, path: str, body: object) -> httpx.Response:
    """The body as json.dumps writes it: a lone surrogate goes out as its `\\ud800` escape, valid JSON."""
    return client.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})


@pytest.mark.parametrize(
    "odd",
    [{"timestamp": "\ud800"}, {"dimensions": {"\ud800": "eu"}}],
    ids=["timestamp", "dimension-key"],
)
def test_togai_batch_with_a_lone_surrogate_keeps_its_good_events(
    client: httpx.Client, mock_app: Starlette, odd: dict[str, Any]
) -> None:
    """A user sees `400 the mock could not handle this request: UnicodeEncodeError(...)` and loses the good
    event beside the odd one. They should see the odd event judged (202, or 207 naming it) and the good one
    stored, as Togai (a JVM, where such a string is ordinary) judges each event of a batch on its own."""
    good = togai_event(1)
    answer = _post_json(client, f"{TOGAI}/ingestBatch", {"events": [good, togai_event(2, **odd)]})

    assert MOCK_FAILED not in answer.text
    assert answer.status_code in (202, 207), answer.text
    assert "evt_1" in {event["id"] for event in mock_app.state.mock.togai.events()}


def test_lago_batch_names_the_event_whose_non_object_properties_hold_a_lone_surrogate(
    client: httpx.Client, mock_app: Starlette
) -> None:
    """`properties: "x"` gets 422 naming index 1, so a sender drops that event and re-sends the good one. With
    `"\\ud800"` instead the user sees `400 {"status":400,"error":"Bad Request"}` for the whole batch (the
    mock's own failure, disguised as a client error), so every event of it fails. They should see the same
    422 naming index 1."""
    events = [lago_event(1), lago_event(2, properties="\ud800")]
    answer = _post_json(client, f"{LAGO}/events/batch", {"events": events})

    assert answer.status_code == 422, answer.text
    assert set(answer.json()["error_details"]) == {"1"}
    assert mock_app.state.mock.lago.events() == []


def test_an_events_page_with_a_huge_offset_is_a_plain_client_error(client: httpx.Client) -> None:
    """`GET /_mock/events/togai?offset=<5,000 nines>` raises ValueError out of the test's own httpx call. The
    user should get what any other bad offset gets: 400 naming `offset`, or the empty page past the end."""
    try:
        answer = client.get("/_mock/events/togai", params={"offset": "9" * 5000})
    except ValueError as exc:
        pytest.fail(f"the admin route raised into the client: {exc!r:.120}")

    assert answer.status_code in (200, 400)
    assert MOCK_FAILED not in answer.text
    assert answer.status_code == 400 or answer.json() == []


def test_an_admin_route_does_not_buffer_a_body_without_bound(mock_app: Starlette) -> None:
    """`PUT /_mock/faults` with 72 MB of whitespace around `{}` is read whole into memory and answered 200 (an
    admin route needs no token: anyone who reaches a `--host 0.0.0.0` mock can grow it at will). A user
    should see it refused (a fault configuration is a few hundred bytes) after at most DRAIN_LIMIT read."""
    chunk = b" " * (1 << 20)
    chunks = DRAIN_LIMIT // len(chunk) + 8
    read = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal read
        for _ in range(chunks):
            read += len(chunk)
            yield chunk
        yield b"{}"

    async def put() -> httpx.Response:
        async with httpx.AsyncClient(transport=async_transport(mock_app), base_url="http://mock") as http:
            return await http.put(
                "/_mock/faults", content=body(), headers={"Content-Type": "application/json"}, timeout=60
            )

    answer = anyio.run(put)

    assert answer.status_code >= 400
    assert read <= DRAIN_LIMIT + len(chunk)


def test_a_lago_429_fault_keeps_its_wait_when_the_rate_limits_are_on(
    client_for: Callable[[Starlette], httpx.Client],
) -> None:
    """With rate limits on and `rate_429=1, retry_after=7`, a Lago 429 says `X-RateLimit-Remaining: 49` and
    `X-RateLimit-Reset: 1`: a 429 claiming 49 requests left, and a client waiting by Reset (Lago's only wait)
    retries after 1 s instead of 7. The README says random 429 faults are unchanged by the limits: the user
    should see Remaining 0 and Reset 7, as with the limits off."""
    faults = FaultConfig(rate_429=1.0, retry_after=7)
    app = create_app(MockConfig(token=TOKEN, faults=faults, rate_limits=RateLimitConfig(enabled=True)))

    answer = client_for(app).get(f"{LAGO}/events/txn_1")

    assert answer.status_code == 429
    assert answer.headers["X-RateLimit-Remaining"] == "0"
    assert answer.headers["X-RateLimit-Reset"] == "7"


def test_lago_keys_of_one_organization_share_one_rate_budget(
    client_for: Callable[[Starlette], httpx.Client],
) -> None:
    """Lago: "Rate limits apply per organization, so all of your API keys share the same budget". The mock's
    restricted key is a second key of the same organization (it reads the same events). With a budget of one
    find per 100 s, the main key's find takes it, and the read-only key's find right after is answered 404 as
    if it had a budget of its own: a poller and a sender that pass together on the mock are throttled in
    production. The user should see 429 for the second find."""
    limits = RateLimitConfig(enabled=True, limits={"lago.find_event": 0.01})
    app = create_app(MockConfig(token=TOKEN, restricted_token="read-only", rate_limits=limits))
    http = client_for(app)

    first = http.get(f"{LAGO}/events/txn_1")
    second = http.get(f"{LAGO}/events/txn_1", headers={"Authorization": "Bearer read-only"})

    assert first.status_code == 404
    assert second.status_code == 429


def test_assert_stored_tells_lago_events_of_two_subscriptions_apart() -> None:
    """Lago refuses a transaction_id again only for the same subscription, so one id sent for two
    subscriptions (in two requests) is two events, each stored once. `lago_mock.assert_stored([a, b])` fails
    with "stored more than once: 't-1'". The user should see it pass: exactly these events, each once."""
    first, second = seats_event("t-1", "sub_a"), seats_event("t-1", "sub_b")
    with ProviderMock.create_in_process("lago", token=TOKEN) as lago:
        http = lago.http_client()
        assert [http.post("/events", json={"event": event}).status_code for event in (first, second)] == [
            200,
            200,
        ]

        lago.assert_stored([first, second])


COMMAND = str(Path(sys.executable).with_name("billing-events"))


@pytest.mark.parametrize(
    "command",
    [[COMMAND, "mock"], [sys.executable, "-m", "billing_events.mock"]],
    ids=["billing-events mock", "python -m billing_events.mock"],
)
def test_an_out_of_range_mock_port_is_a_usage_error_naming_it(command: list[str]) -> None:
    """`MOCK_PORT=99999 billing-events mock` prints a traceback ending in `OverflowError: bind(): port must be
    0-65535` and exits 1. The README: a bad option or setting exits with 64 and says which, as `--port 99999`
    and `MOCK_PORT=not-a-port` do: the user should see exit 64 and MOCK_PORT named."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MOCK_")}
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT,
        env={**env, "MOCK_PORT": "99999"},
        check=False,
    )

    assert result.returncode == 64, result.stderr[-300:]
    assert "MOCK_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_review_helpers_reach_the_mock(client: httpx.Client) -> None:
    """Not a defect: the helpers above send what they claim (an ordinary event is accepted)."""
    assert _post_json(client, f"{TOGAI}/ingest", {"event": togai_event(1)}).status_code == 202
    assert client.headers["Authorization"] == AUTH["Authorization"]
