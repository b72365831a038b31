"""Second reading of the mock's lago-api fidelity fixes (not-blank ids, batch duplicates, Rails media types).

Sources read:
- rails/rails actionpack/lib/action_dispatch/http/mime_negotiation.rb `content_mime_type`:
  `get_header("CONTENT_TYPE") =~ /^([^,;]*)/` then `Mime::Type.lookup($1.strip.downcase)`: the media type
  ends at the first `;` or `,`, and case does not matter.
- rails/rails activesupport core_ext/object/blank.rb: `BLANK_RE = /\\A[[:space:]]*\\z/`; Onigmo's
  `[[:space:]]` is Unicode White_Space, which has no U+200B, U+FEFF nor (since Unicode 6.3) U+180E.
- getlago/lago-api app/models/event.rb: presence is validated on `transaction_id` and `code` only, so a
  whitespace-only `external_subscription_id` is stored as sent.
- getlago/lago-api app/services/events/create_batch_service.rb `bulk_insert_events`: `insert_all(...,
  unique_by: :index_unique_transaction_id, returning: [:transaction_id, ...])`, `index_by` transaction_id,
  then each event in order `delete`s its id's row; an index left without one is `value_already_exist`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from billing_events import Lago
from billing_events.errors import InvalidEventError
from billing_events.mock.handle import ProviderMock

from .mock_support import seats_event as lago_event


@pytest.fixture(params=["postgres", "clickhouse"])
def mock(request: pytest.FixtureRequest) -> Iterator[ProviderMock]:
    provider = ProviderMock.create_in_process("lago", lago_store=request.param)
    yield provider
    provider.close()


# --- Defects ----------------------------------------------------------------------------------------------


def test_a_content_type_cut_at_a_comma_is_json_as_rails_reads_it(mock: ProviderMock) -> None:
    body = json.dumps({"event": lago_event()}).encode()
    with mock.http_client() as http:
        response = http.post(
            "/events", content=body, headers={"content-type": "application/json, text/plain"}
        )

    assert response.status_code == 200, response.text
    assert [event["transaction_id"] for event in mock.stored()] == ["t-1"]


# --- What holds -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["Application/JSON; charset=utf-8", "application/json;charset=UTF-8", "TEXT/X-JSON"]
)
def test_json_media_types_in_any_case_and_with_parameters_are_read(
    mock: ProviderMock, content_type: str
) -> None:
    body = json.dumps({"events": [lago_event()]}).encode()
    with mock.http_client() as http:
        response = http.post("/events/batch", content=body, headers={"content-type": content_type})

    assert response.status_code == 200, response.text


def test_a_body_without_content_type_is_not_read(mock: ProviderMock) -> None:
    body = json.dumps({"event": lago_event()}).encode()
    with mock.http_client() as http:
        single = http.post("/events", content=body)
        batch = http.post("/events/batch", content=json.dumps({"events": [lago_event()]}).encode())

    assert single.status_code == 400
    assert (batch.status_code, batch.json()["error_details"]) == (422, {"events": ["no_events"]})
    assert mock.stored() == []


def test_three_copies_of_an_id_across_subscriptions_name_every_copy_after_the_first(
    mock: ProviderMock,
) -> None:
    events = [lago_event("t", f"sub_{n}") for n in range(4)]
    with mock.http_client() as http:
        stored = http.post("/events", json={"event": lago_event("t", "sub_2")})
        response = http.post("/events/batch", json={"events": events})

    assert stored.status_code == 200
    if mock.store == "postgres":
        # insert_all returns rows for sub_0, sub_1, sub_3; index_by keeps one row for "t": index 0 takes it.
        assert response.status_code == 422
        assert response.json()["error_details"] == {
            str(n): {"transaction_id": ["value_already_exist"]} for n in (1, 2, 3)
        }
        assert len(mock.stored()) == 1
    else:
        assert response.status_code == 200  # ClickHouse keeps every write; duplicates vanish when read


@pytest.mark.parametrize("value", ["\u200b", "\ufeff", "\u180e", "\u200b \u200b"])
def test_text_rails_does_not_count_as_blank_is_sent_and_stored(mock: ProviderMock, value: str) -> None:
    Lago("t").validate({**lago_event(), "transaction_id": value, "code": value})
    with mock.http_client() as http:
        response = http.post("/events", json={"event": {**lago_event(), "transaction_id": value}})

    assert response.status_code == 200, response.text


def test_a_whitespace_only_subscription_is_stored_as_lago_stores_it(mock: ProviderMock) -> None:
    # The server stores it (an event it can never bill: no subscription's id is blank), and so does the mock;
    # the overlay refuses it before sending, as it refuses an empty one (README, strict rules).
    with pytest.raises(InvalidEventError):
        Lago("t").validate({**lago_event(), "external_subscription_id": "   "})
    with mock.http_client() as http:
        response = http.post("/events", json={"event": lago_event(subscription="   ")})

    assert response.status_code == 200, response.text


def test_a_huge_blank_id_is_refused_locally_in_a_short_message_naming_field_and_rule() -> None:
    with pytest.raises(InvalidEventError) as caught:
        Lago("t").validate({**lago_event(), "transaction_id": "\u3000" * 200_000})

    message = str(caught.value)
    assert caught.value.field == "event.transaction_id"
    assert "not only whitespace" in message and len(message) < 1000
