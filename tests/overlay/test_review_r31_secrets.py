"""Review r31 (secrets and bounded text): defects found, each a strict xfail until it is fixed."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import orjson
import pytest
from cli.support import lago_event, togai_event

from billing_events import ConfigurationError, Lago, Outcome, OutcomeStatus, RetryPolicy, Togai

TOKEN = "review-r31-token-5c1e9a7b"
ONE_TRY = RetryPolicy(max_attempts=1, deadline=5.0, initial_delay=0.001, max_delay=0.001)
TWO_TRIES = RetryPolicy(max_attempts=2, deadline=5.0, initial_delay=0.001, max_delay=0.001)
SHORT = 1200  # a reason, a log line, an exception message or a log field stays well under this


def accepting(request: httpx.Request) -> httpx.Response:
    """Each provider's success answer: Lago echoes the batch's events, Togai says nothing of them."""
    if request.url.path.endswith("/events/batch"):
        return httpx.Response(200, json={"events": orjson.loads(request.content)["events"]})
    return httpx.Response(202, json={})


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("billing_events")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


# -- A key that is a huge integer ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_type", "make", "key_field"), [(Togai, togai_event, "id"), (Lago, lago_event, "transaction_id")]
)
def test_an_event_whose_key_is_a_5000_digit_integer_is_rejected_not_raised(
    client_type: type[Togai] | type[Lago], make: object, key_field: str
) -> None:
    """A user sends a batch in which one event's key is a 5,000-digit int (a bad upstream column): send()
    raises ValueError("Exceeds the limit (4300 digits) ...") and the good event beside it is never sent.
    They should get a report: that event rejected, naming its key field and the rule, the other delivered."""
    bad = make(0)  # type: ignore[operator]
    bad[key_field] = 10**5000
    with client_type(
        TOKEN, base_url="http://provider.local", transport=httpx.MockTransport(accepting)
    ) as client:
        report = client.send([bad, make(1)])  # type: ignore[operator]

    [refused, good] = report.outcomes
    assert refused.status is OutcomeStatus.REJECTED
    assert (refused.reason or "").startswith(f"event.{key_field}")
    assert good.status is OutcomeStatus.DELIVERED


def test_track_of_an_event_whose_key_is_a_5000_digit_integer_settles_it() -> None:
    """track() of an event whose id is a 5,000-digit int raised a bare ValueError and the event vanished:
    no outcome, no dead letter. It should be refused as any other invalid event is (track() never raises
    for one): a `rejected` dead letter naming event.id, and the next event delivered."""
    letters: list[Outcome] = []
    delivered: list[Outcome] = []
    bad = togai_event(0)
    bad["id"] = 10**5000
    with (
        Togai(
            TOKEN,
            base_url="http://provider.local",
            transport=httpx.MockTransport(accepting),
            on_dead_letter=letters.append,
        ) as client,
        client.background(on_outcome=delivered.append) as sender,
    ):
        sender.track(bad)
        sender.track(togai_event(1))

    assert [letter.status for letter in letters] == [OutcomeStatus.REJECTED]
    assert (letters[0].reason or "").startswith("event.id")
    assert [outcome.status for outcome in delivered if outcome.status is OutcomeStatus.DELIVERED] == [
        OutcomeStatus.DELIVERED
    ]


def test_a_huge_non_string_key_gives_a_short_outcome_key() -> None:
    """An event whose id is a list holding a 1 MB string is rejected (good), but its outcome's key is the
    list's 1 MB repr, kept in the report, its repr and the dead letter. A key that is not a string can
    never be replayed anyway; it should be shown as any other bad value is, cut to a few hundred characters."""
    bad = togai_event(0)
    bad["id"] = ["x" * 1_000_000]
    with Togai(TOKEN, base_url="http://provider.local", transport=httpx.MockTransport(accepting)) as client:
        [outcome] = client.send([bad]).outcomes

    assert outcome.status is OutcomeStatus.REJECTED
    assert len(outcome.key or "") < SHORT
    assert len(repr(outcome)) < SHORT


# -- A huge X-Request-Id -----------------------------------------------------------------------------


def test_a_huge_request_id_header_gives_short_errors_and_log_lines(records: Records) -> None:
    """A proxy answers 500 with a 60 KB X-Request-Id. send()'s INFO 'sent again' line is 60 KB, the
    WARNING's request_id field is 60 KB, and raise_for_failures() raises a 60 KB message (find_event cuts
    the same header to 100 characters). Every text should stay short, whatever the header's size."""
    huge = "r" * 60_000

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, headers={"X-Request-Id": huge}, json={"message": "try again"})

    with Togai(
        TOKEN, base_url="http://provider.local", transport=httpx.MockTransport(answer), retry=TWO_TRIES
    ) as client:
        report = client.send([togai_event(0)])

    [outcome] = report.outcomes
    assert outcome.status is OutcomeStatus.UNKNOWN
    with pytest.raises(Exception) as raised:  # noqa: PT011 - the text is what matters
        report.raise_for_failures()
    assert len(str(raised.value)) < SHORT
    assert len(getattr(outcome.error, "request_id", "") or "") < SHORT
    assert records.records
    for record in records.records:
        assert len(record.getMessage()) < SHORT
        assert len(str(getattr(record, "request_id", "") or "")) < SHORT


# -- Configuration errors ---------------------------------------------------------------------------


def test_credentials_in_a_base_url_without_scheme_are_not_repeated() -> None:
    """LAGO_API_URL=admin:hunter2@lago.internal:3000 (scheme forgotten) is refused, but the error quotes it
    whole, password included, and the CLI prints it. The README says credentials in a base URL are refused
    without repeating them; the message should mask the password (or not quote the URL)."""
    with pytest.raises(ConfigurationError) as refused:
        Lago(TOKEN, base_url="admin:hunter2@lago.internal:3000")
    assert "hunter2" not in f"{refused.value} {refused.value!r}"


def test_an_unknown_endpoint_name_gives_a_short_error() -> None:
    """Togai(endpoint=<1 MB string>) raises a ConfigurationError of 1 MB; base_url and every other option
    are cut (shorten/shown). The endpoint's name should be cut too."""
    with pytest.raises(ConfigurationError) as refused:
        Togai(TOKEN, endpoint="x" * 1_000_000)
    assert str(refused.value).startswith("endpoint: unknown togai endpoint")
    assert len(str(refused.value)) < SHORT


# -- A token echoed in Content-Encoding ---------------------------------------------------------------


def test_a_token_echoed_in_content_encoding_stays_out_of_the_reason() -> None:
    """A misbehaving proxy reflects the request's key into Content-Encoding. The outcome's reason (and the
    dead letter, the CLI table) reads "unsupported content encoding '<the Lago key>'". The README says a
    token echoed in a header never reaches our objects; the quoted value should be scrubbed like the rest."""
    key = "3f2a9c1e-7b4d-4e8a-9c21-5d6e7f809a1b"  # a Lago API key is a UUID

    def answer(request: httpx.Request) -> httpx.Response:
        echoed = request.headers["authorization"].split()[1]
        return httpx.Response(200, headers={"Content-Encoding": echoed}, content=b"{}")

    with Lago(
        key, base_url="http://provider.local", transport=httpx.MockTransport(answer), retry=ONE_TRY
    ) as client:
        [outcome] = client.send([lago_event(0)]).outcomes

    assert not outcome.delivered
    assert "content encoding" in (outcome.reason or "")
    assert key not in f"{outcome.reason} {outcome.error} {outcome.error!r}"
