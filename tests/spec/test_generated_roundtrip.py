"""Spec examples survive a trip through the generated models unchanged."""

from __future__ import annotations

import pytest

from .generated_operations import MODELS, model_class
from .openapi_documents import SpecExample, all_examples

MODELLED_EXAMPLES = [
    example
    for example in all_examples()
    if example.schema_name is not None and hasattr(MODELS[example.spec.provider], example.schema_name)
]


def test_every_request_and_response_example_has_a_model() -> None:
    bodies = [example for example in all_examples() if example.location in ("request", "response")]
    modelled = {example.test_id for example in MODELLED_EXAMPLES}
    assert bodies
    assert [example.test_id for example in bodies if example.test_id not in modelled] == []


@pytest.mark.parametrize("example", MODELLED_EXAMPLES, ids=[example.test_id for example in MODELLED_EXAMPLES])
def test_example_round_trips_through_its_model(example: SpecExample) -> None:
    assert example.schema_name is not None
    model = model_class(example.spec.provider, example.schema_name)

    parsed = model.from_dict(example.value)
    serialised = parsed.to_dict()

    assert model.from_dict(serialised) == parsed
    spec, schema = example.spec, example.schema_pointer
    assert spec.comparable(schema, serialised) == spec.comparable(schema, example.value)
    assert spec.validator(schema).is_valid(serialised), (
        f"{example.test_id}: to_dict() no longer matches the schema"
    )
