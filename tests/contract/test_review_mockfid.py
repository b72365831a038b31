"""The shipped mock against what lago-api really does, as a user's test sees it through the plugin fixtures.

Sources read:
- getlago/lago-api app/models/event.rb: `validates :transaction_id, presence: true` and
  `validates :code, presence: true`; rails/rails activesupport core_ext/object/blank.rb: a string of
  whitespace only is blank, so presence refuses it.
- getlago/lago-api app/services/events/create_service.rb (`event.save!` on the Postgres store,
  `rescue ActiveRecord::RecordInvalid` -> `record_validation_failure!`) and
  app/services/events/create_batch_service.rb (`result.errors[index] = event.errors.messages unless
  event.valid?` for every event on either store).
- create_batch_service.rb `bulk_insert_events`: `Event.insert_all(records, unique_by:
  :index_unique_transaction_id, returning: [:transaction_id, ...])`, then for each event in order
  `attributes_per_transaction_id.delete(event.transaction_id)`; only an index left without a returned row
  gets `value_already_exist`.
- rails/rails actionpack/lib/action_dispatch/http/mime_types.rb: `Mime::Type.register "application/json",
  :json, %w( text/x-json application/jsonrequest )`; action_dispatch/http/parameters.rb:
  `parsers.fetch(content_mime_type) { return yield }`: only those three media types have their body parsed
  into params; any other (`application/vnd.api+json`) leaves params empty, so `params.require(:event)`
  raises ParameterMissing (400) and the batch sees no `events` (422 no_events).
"""

from __future__ import annotations

import pytest

from billing_events.mock.handle import ProviderMock

from .mock_support import seats_event as lago_event

# -- presence: a whitespace-only id or code is blank to Rails ---------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("transaction_id", "   "), ("transaction_id", " \t\n"), ("code", "  ")],
)
def test_a_blank_transaction_id_or_code_is_value_is_mandatory(
    lago_mock: ProviderMock, field: str, value: str
) -> None:
    event = {**lago_event(), field: value}
    with lago_mock.http_client() as http:
        response = http.post("/events", json={"event": event})

    assert response.status_code == 422, response.text
    assert response.json()["error_details"] == {field: ["value_is_mandatory"]}
    assert lago_mock.stored() == []


@pytest.mark.parametrize("lago_mock", ["postgres", "clickhouse"], indirect=True)
def test_a_blank_transaction_id_in_a_batch_rejects_the_batch(lago_mock: ProviderMock) -> None:
    with lago_mock.http_client() as http:
        response = http.post("/events/batch", json={"events": [lago_event("ok-1"), lago_event("  ")]})

    assert response.status_code == 422, response.text
    assert response.json()["error_details"] == {"1": {"transaction_id": ["value_is_mandatory"]}}
    assert lago_mock.stored() == []


def test_an_empty_transaction_id_is_value_is_mandatory(lago_mock: ProviderMock) -> None:
    """Holds: the empty string is refused as lago-api refuses it."""
    with lago_mock.http_client() as http:
        response = http.post("/events", json={"event": {**lago_event(), "transaction_id": ""}})

    assert response.status_code == 422
    assert response.json()["error_details"] == {"transaction_id": ["value_is_mandatory"]}


# -- batch duplicates: which index the server names ------------------------------------------------------


def test_a_stored_key_then_its_id_for_another_subscription_names_only_the_later_index(
    lago_mock: ProviderMock,
) -> None:
    """[(sub_a, t) already stored, (sub_b, t) new]: ON CONFLICT DO NOTHING skips index 0 and inserts index 1,
    RETURNING one row for `t`; the loop hands that row to index 0 and leaves index 1 without one."""
    with lago_mock.http_client() as http:
        assert http.post("/events", json={"event": lago_event("t", "sub_a")}).status_code == 200
        response = http.post(
            "/events/batch", json={"events": [lago_event("t", "sub_a"), lago_event("t", "sub_b")]}
        )

    assert response.status_code == 422
    assert response.json()["error_details"] == {"1": {"transaction_id": ["value_already_exist"]}}
    assert lago_mock.stored_keys() == {"t"} and len(lago_mock.stored()) == 1


def test_a_batch_resending_a_stored_key_is_refused_whole(lago_mock: ProviderMock) -> None:
    """Holds: [(new), (stored)] names index 1 only and stores nothing, as the rollback does."""
    with lago_mock.http_client() as http:
        assert http.post("/events", json={"event": lago_event("t", "sub_a")}).status_code == 200
        response = http.post(
            "/events/batch", json={"events": [lago_event("n", "sub_a"), lago_event("t", "sub_a")]}
        )

    assert response.status_code == 422
    assert response.json()["error_details"] == {"1": {"transaction_id": ["value_already_exist"]}}
    assert lago_mock.stored_keys() == {"t"}


# -- Content-Type: which bodies Rails parses ---------------------------------------------------------------


@pytest.mark.parametrize("media_type", ["application/vnd.api+json", "application/merge-patch+json"])
def test_a_json_suffix_media_type_is_not_parsed_by_lago(lago_mock: ProviderMock, media_type: str) -> None:
    body = b'{"event": {"transaction_id": "ct-1", "external_subscription_id": "sub_a", "code": "seats"}}'
    with lago_mock.http_client() as http:
        single = http.post("/events", content=body, headers={"Content-Type": media_type})
        batch = http.post(
            "/events/batch",
            content=b'{"events": [{"transaction_id": "ct-2", "external_subscription_id": "sub_a", "code": "seats"}]}',
            headers={"Content-Type": media_type},
        )

    assert single.status_code == 400, single.text
    assert single.json()["error"] == "BadRequest: param is missing or the value is empty or invalid: event"
    assert batch.status_code == 422, batch.text
    assert batch.json()["error_details"] == {"events": ["no_events"]}
    assert lago_mock.stored() == []


@pytest.mark.parametrize("media_type", ["text/x-json", "application/jsonrequest"])
def test_rails_json_aliases_are_parsed_by_lago(lago_mock: ProviderMock, media_type: str) -> None:
    body = b'{"event": {"transaction_id": "ct-3", "external_subscription_id": "sub_a", "code": "seats"}}'
    with lago_mock.http_client() as http:
        response = http.post("/events", content=body, headers={"Content-Type": media_type})

    assert response.status_code == 200, response.text
    assert lago_mock.stored_keys() == {"ct-3"}


# -- the plugin's fixtures -----------------------------------------------------------------------------------


@pytest.mark.parametrize("round_", [1, 2])
def test_each_test_gets_a_fresh_mock(lago_mock_server: ProviderMock, round_: int) -> None:
    """Holds: state, faults and counters do not leak from one test to the next (served fixture)."""
    del round_
    assert lago_mock_server.stored() == []
    assert lago_mock_server.stats()["requests"] == 0
    assert lago_mock_server.faults.rate_503 == 0
    lago_mock_server.set_faults(rate_503=1.0)
    with lago_mock_server.http_client() as http:
        assert http.post("/events", json={"event": lago_event()}).status_code == 503
    lago_mock_server.clear_faults()
    assert lago_mock_server.client.send([lago_event()]).ok
