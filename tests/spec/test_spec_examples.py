"""Every example in the specs is valid against the schema it is written for."""

from __future__ import annotations

import copy

import pytest

from .openapi_documents import PROVIDERS, SpecExample, all_examples, load_spec, pointer_join

EXAMPLES = all_examples()


def _holders() -> list[tuple[str, str, str]]:
    """(test id, provider, pointer) of every request body and response of every operation."""
    found = []
    for provider in PROVIDERS:
        spec = load_spec(provider)
        for operation in spec.operations():
            body = spec.request_body_pointer(operation)
            if body is not None:
                found.append((f"{provider}:{operation.operation_id}:request", provider, body))
            for status, response in spec.response_pointers(operation).items():
                found.append((f"{provider}:{operation.operation_id}:{status}", provider, response))
    return found


HOLDERS = _holders()


@pytest.mark.parametrize("example", EXAMPLES, ids=[example.test_id for example in EXAMPLES])
def test_example_matches_its_schema(example: SpecExample) -> None:
    validator = example.spec.validator(example.schema_pointer)
    problems = [
        f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in validator.iter_errors(example.value)
    ]
    assert not problems, f"{example.test_id} does not match {example.schema_pointer}:\n" + "\n".join(problems)


@pytest.mark.parametrize(("provider", "pointer"), [h[1:] for h in HOLDERS], ids=[h[0] for h in HOLDERS])
def test_every_body_has_an_example(provider: str, pointer: str) -> None:
    spec = load_spec(provider)
    content = spec.at(pointer).get("content")
    assert content, f"{provider}.yaml#{pointer} documents no body"
    for media_type, media in content.items():
        count = len(media.get("examples", {})) + ("example" in media)
        assert count >= 1, f"{provider}.yaml#{pointer_join(pointer, 'content', media_type)} has no example"


def test_examples_were_found_in_every_place_they_are_written() -> None:
    locations = {(example.spec.provider, example.location) for example in EXAMPLES}
    assert ("togai", "request") in locations
    assert ("togai", "schema") in locations
    assert ("lago", "response") in locations
    assert ("lago", "parameter") in locations


def _first(test_id_prefix: str) -> SpecExample:
    return next(example for example in EXAMPLES if example.test_id.startswith(test_id_prefix))


def test_validation_resolves_refs_and_checks_date_time_format() -> None:
    # Guards the test above: a broken value must be reported, not waved through.
    ingest = _first("togai:ingest:request")
    broken = copy.deepcopy(ingest.value)
    broken["event"]["timestamp"] = "2024-05-01 at noon"
    assert not ingest.spec.validator(ingest.schema_pointer).is_valid(broken)

    batch = _first("lago:createBatchEvents:request")
    broken = copy.deepcopy(batch.value)
    broken["events"][0]["timestamp"] = "2024-05-01T10:15:31Z"
    assert not batch.spec.validator(batch.schema_pointer).is_valid(broken)

    stored = _first("lago:findEvent:200")
    broken = copy.deepcopy(stored.value)
    broken["event"]["undocumented_extra"] = 1
    assert stored.spec.validator(stored.schema_pointer).is_valid(broken), "EventObject allows extra keys"
    broken = {**stored.value, "unexpected": True}
    assert not stored.spec.validator(stored.schema_pointer).is_valid(broken)
