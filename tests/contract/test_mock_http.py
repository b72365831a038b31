"""Auth and bad input on both providers: each answers in its own error shape, and never with a 500."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from billing_events.mock import MockConfig, MockState, create_app, togai

from .mock_support import LAGO, TOGAI, TOKEN, lago_event, togai_event

LAGO_UNAUTHORIZED = {"status": 401, "error": "Unauthorized"}
TOGAI_UNAUTHORIZED = {"message": "Credential is not valid"}
PUBLIC_ROUTES = [
    ("POST", f"{TOGAI}/ingest", {"event": togai_event()}, TOGAI_UNAUTHORIZED),
    ("POST", f"{TOGAI}/ingestBatch", {"events": [togai_event()]}, TOGAI_UNAUTHORIZED),
    ("POST", f"{LAGO}/events", {"event": lago_event()}, LAGO_UNAUTHORIZED),
    ("POST", f"{LAGO}/events/batch", {"events": [lago_event()]}, LAGO_UNAUTHORIZED),
    (
        "POST",
        f"{LAGO}/events/estimate_fees",
        {"event": {"code": "seats", "external_subscription_id": "s"}},
        LAGO_UNAUTHORIZED,
    ),
    ("GET", f"{LAGO}/events/txn_1", None, LAGO_UNAUTHORIZED),
]


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(None, id="missing"),
        pytest.param("Bearer wrong-token", id="wrong-token"),
        pytest.param(TOKEN, id="no-scheme"),
        pytest.param("Bearer", id="empty-token"),
    ],
)
@pytest.mark.parametrize(("method", "path", "body", "expected"), PUBLIC_ROUTES)
def test_public_routes_need_the_bearer_token(
    client: httpx.Client,
    mock_state: MockState,
    authorization: str | None,
    method: str,
    path: str,
    body: object,
    expected: object,
) -> None:
    if authorization is None:
        del client.headers["Authorization"]
    else:
        client.headers["Authorization"] = authorization

    response = client.request(method, path, json=body)

    assert response.status_code == 401
    assert response.json() == expected
    assert mock_state.togai.events() == []
    assert mock_state.lago.events() == []


def test_togai_wants_the_bearer_scheme(client: httpx.Client) -> None:
    response = client.post(
        f"{TOGAI}/ingest", json={"event": togai_event()}, headers={"Authorization": f"Basic {TOKEN}"}
    )

    assert (response.status_code, response.json()) == (401, TOGAI_UNAUTHORIZED)


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param(f"Basic {TOKEN}", id="other-scheme"),
        pytest.param(f"Token {TOKEN}", id="any-word"),
        pytest.param(f"  Bearer \t{TOKEN}  ", id="whitespace-runs"),
        pytest.param(f"Bearer {TOKEN} and more", id="words-after"),
    ],
)
def test_lago_reads_the_second_word_whatever_the_scheme(client: httpx.Client, authorization: str) -> None:
    """lago-api's Api::BaseController takes the key as `Authorization.split(" ").second`: the first word is
    never checked, runs of whitespace split like one space, and later words are ignored
    (app/controllers/api/base_controller.rb, `auth_token`)."""
    response = client.post(
        f"{LAGO}/events", json={"event": lago_event()}, headers={"Authorization": authorization}
    )

    assert response.status_code == 200


def test_the_bearer_scheme_is_case_insensitive(client: httpx.Client) -> None:
    response = client.post(
        f"{TOGAI}/ingest", json={"event": togai_event()}, headers={"Authorization": f"bearer {TOKEN}"}
    )

    assert response.status_code == 202


def test_admin_routes_need_no_token(client: httpx.Client) -> None:
    del client.headers["Authorization"]

    assert client.get("/_mock/stats").status_code == 200
    assert client.get("/_mock/faults").status_code == 200


NO_PARAMS = [
    pytest.param(b"", "application/json", id="empty-body"),
    pytest.param(b'{"events": []}', "text/plain", id="text-plain"),
    pytest.param(b"events=1", "application/x-www-form-urlencoded", id="form"),
    pytest.param(b'{"events": []}', None, id="no-content-type"),
]
UNPARSABLE = [
    pytest.param(b'{"events": [', "application/json", id="truncated-json"),
    pytest.param(b'{"events": NaN}', "application/json", id="nan"),
    pytest.param(b'{"events": [1e999]}', "application/json", id="infinite-number"),
    pytest.param(b"\xff\xfe{}", "application/json", id="not-utf8"),
]


@pytest.mark.parametrize(
    ("path", "expected", "content", "content_type"),
    [
        *[
            pytest.param(f"{TOGAI}/ingestBatch", {"message"}, *p.values, id=f"togai-{p.id}")
            for p in NO_PARAMS
        ],
        *[
            pytest.param(f"{path}", expected, *p.values, id=f"{name}-{p.id}")
            for name, path, expected in (
                ("togai", f"{TOGAI}/ingestBatch", {"message"}),
                ("lago", f"{LAGO}/events/batch", {"status", "error"}),
            )
            for p in UNPARSABLE
        ],
    ],
)
def test_unreadable_bodies_get_a_400_in_the_provider_shape(
    client: httpx.Client, path: str, expected: set[str], content: bytes, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}

    response = client.post(path, content=content, headers=headers)

    assert response.status_code == 400
    assert set(response.json()) == expected


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        *NO_PARAMS,
        pytest.param(b"[]", "application/json", id="array"),
        pytest.param(b"5", "application/json", id="number"),
        pytest.param(b"null", "application/json", id="null"),
    ],
)
def test_a_lago_batch_body_with_no_events_param_is_no_events(
    client: httpx.Client, content: bytes, content_type: str | None
) -> None:
    """The batch action never calls `params.require`: a body Rails reads no `events` from is an empty batch."""
    headers = {"Content-Type": content_type} if content_type else {}

    response = client.post(f"{LAGO}/events/batch", content=content, headers=headers)

    assert response.status_code == 422
    assert response.json()["error_details"] == {"events": ["no_events"]}


def test_json_with_a_charset_is_accepted(client: httpx.Client) -> None:
    response = client.post(
        f"{TOGAI}/ingest",
        content=httpx.Request("POST", "/", json={"event": togai_event()}).content,
        headers={"Content-Type": "application/json; charset=utf-8"},
    )

    assert response.status_code == 202


def test_a_huge_lago_body_is_a_400(client: httpx.Client) -> None:
    response = client.post(
        f"{LAGO}/events/batch",
        content=b'{"events": ["' + b"x" * (17 * 1024 * 1024) + b'"]}',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["status"] == 400
    assert "larger than" in response.json()["error"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"{TOGAI}/ingestEvents", {"message": "Not Found"}),
        (f"{TOGAI}", {"message": "Not Found"}),
        (f"{LAGO}/customers", {"status": 404, "error": "Not Found", "code": "resource_not_found"}),
        ("/lago/api/v2/events", {"status": 404, "error": "Not Found", "code": "resource_not_found"}),
        (f"{TOGAI}/ingest/", {"message": "Not Found"}),
        ("/elsewhere", {"message": "Not Found"}),
    ],
)
def test_unknown_paths_get_a_404_in_the_provider_shape(
    client: httpx.Client, path: str, expected: object
) -> None:
    response = client.post(path, json={})

    assert response.status_code == 404
    assert response.json() == expected


@pytest.mark.parametrize(
    ("method", "path", "allow", "expected"),
    [
        ("GET", f"{TOGAI}/ingest", "POST", {"message": "Method Not Allowed"}),
        ("DELETE", f"{TOGAI}/ingestBatch", "POST", {"message": "Method Not Allowed"}),
    ],
)
def test_wrong_methods_get_a_405_with_allow(
    client: httpx.Client, method: str, path: str, allow: str, expected: object
) -> None:
    response = client.request(method, path)

    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == set(allow.split(", "))
    assert response.json() == expected


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", f"{LAGO}/events"),
        ("DELETE", f"{LAGO}/events/txn_1"),
        ("POST", f"{LAGO}/events/txn_1"),
        ("PATCH", f"{LAGO}/events/estimate_fees"),
    ],
)
def test_lago_answers_a_wrong_method_like_an_unknown_route(
    client_for: Callable[[Starlette], httpx.Client], method: str, path: str
) -> None:
    """Rails routes every unknown method and path to one catch-all 404, which checks no token."""
    client = client_for(create_app(MockConfig(token=TOKEN)))

    response = client.request(method, path, headers={"Authorization": "Bearer wrong"})

    assert response.status_code == 404
    assert "allow" not in response.headers
    assert response.json() == {"status": 404, "error": "Not Found", "code": "resource_not_found"}


def test_a_get_of_batch_is_a_find_of_transaction_batch(client: httpx.Client) -> None:
    response = client.get(f"{LAGO}/events/batch")

    assert response.status_code == 404
    assert response.json()["code"] == "event_not_found"


def test_a_failing_handler_answers_a_provider_400_not_a_500(
    monkeypatch: pytest.MonkeyPatch, client_for: Callable[[Starlette], httpx.Client]
) -> None:
    async def broken(request: Request, state: MockState) -> Response:
        raise RuntimeError("boom")

    monkeypatch.setattr(togai, "ingest", broken)
    client = client_for(create_app(MockConfig(token=TOKEN)))

    response = client.post(f"{TOGAI}/ingest", json={"event": togai_event()})

    assert response.status_code == 400
    assert "boom" in response.json()["message"]


def test_requests_are_counted_per_provider_whatever_their_outcome(client: httpx.Client) -> None:
    client.post(f"{TOGAI}/ingest", json={"event": togai_event()})
    client.post(f"{TOGAI}/ingest", content=b"{", headers={"Content-Type": "application/json"})
    client.get(f"{TOGAI}/nowhere")
    client.get(f"{LAGO}/events/x", headers={"Authorization": "Bearer nope"})
    client.get("/_mock/stats")

    stats = client.get("/_mock/stats").json()

    assert stats["togai"]["requests"] == 3
    assert stats["lago"]["requests"] == 1


def test_a_client_that_leaves_before_its_body_arrives_is_no_mock_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A cancelled or killed sender closes its connection mid-body: the mock answers nobody and logs no error.
    app = create_app(MockConfig(token=TOKEN))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"{TOGAI}/ingestBatch",
        "raw_path": f"{TOGAI}/ingestBatch".encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {TOKEN}".encode()), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    messages = [
        {"type": "http.request", "body": b'{"events": [', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    async def run() -> None:
        async with app.router.lifespan_context(app):
            await app(scope, receive, send)

    asyncio.run(run())

    assert not [record for record in caplog.records if record.levelname == "ERROR"]
    assert [message["status"] for message in sent if message["type"] == "http.response.start"] == [499]
    assert app.state.mock.togai.events() == []
