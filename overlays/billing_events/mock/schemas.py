"""Request-body rules read from the specs at start-up: compiled validators and the limits next to them.

The package ships the specs as JSON (`mock/specs/*.json`, written by `make regenerate`); a directory of
`*.yaml` specs, such as the repository's `specs/`, works too when PyYAML is installed.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import jsonschema_rs
from attrs import frozen

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")
T = TypeVar("T")


def load_spec(path: Path) -> dict[str, Any]:
    """An OpenAPI document from a `.json` file, or from YAML (which needs PyYAML)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        spec = json.loads(text)
    else:
        import yaml  # Only for YAML specs: the shipped JSON copies need no YAML parser.

        spec = yaml.safe_load(text)
    if not isinstance(spec, dict) or "components" not in spec:
        raise ValueError(f"{path} is not an OpenAPI document with components")
    return spec


def component(spec: dict[str, Any], name: str) -> dict[str, Any]:
    schema = spec["components"]["schemas"][name]
    if not isinstance(schema, dict):
        raise ValueError(f"components.schemas.{name} is not an object")
    return schema


def compile_schema(spec: dict[str, Any], schema: dict[str, Any]) -> jsonschema_rs.Validator:
    """Compile one schema with the spec's components beside it, so its `#/components/...` refs resolve."""
    document = {"$schema": DRAFT_2020_12, **schema, "components": {"schemas": spec["components"]["schemas"]}}
    return jsonschema_rs.validator_for(document, validate_formats=True)


def compile_component(spec: dict[str, Any], name: str) -> jsonschema_rs.Validator:
    return compile_schema(spec, {"$ref": f"#/components/schemas/{name}"})


def envelope_of(spec: dict[str, Any], name: str, array_key: str) -> tuple[dict[str, Any], int, int]:
    """The batch schema without its item rules and size bounds, plus those bounds.

    Items are judged one by one and the size bounds answer with their own status, so the envelope check must
    not reject on either.
    """
    envelope = copy.deepcopy(component(spec, name))
    array_schema = envelope["properties"][array_key]
    array_schema.pop("items", None)
    min_items = int(array_schema.pop("minItems", 0))
    max_items = int(array_schema.pop("maxItems"))
    return envelope, min_items, max_items


def max_body_bytes(spec: dict[str, Any], path: str, method: str) -> int | None:
    limit = spec["paths"][path][method]["requestBody"].get("x-max-body-bytes")
    return None if limit is None else int(limit)


def without_lone_surrogates(value: object) -> object:
    """A copy of a decoded JSON value in which each lone surrogate is a private-use character of its own.

    JSON can spell a lone surrogate (`"\\ud800"`) and both servers take such text as any other, but the
    validator reads text (a string it checks against a pattern or format, a key) as UTF-8, which cannot hold
    one. U+D800 + n stands in as U+F0000 + n: one character and not whitespace, so lengths and blankness
    stay as they were, and keys that differ only by their surrogates stay apart (one U+FFFD for all would
    fold them into one key, and the copy would lose a value). The copy is made through JSON text, so no
    Python recursion walks a deeply nested value.
    """
    text = json.dumps(value, ensure_ascii=False)
    return json.loads(_LONE_SURROGATE.sub(_stand_in, text))


def _stand_in(match: re.Match[str]) -> str:
    return chr(0xF0000 + ord(match.group()) - 0xD800)


def _on_readable_text(check: Callable[[object], T], instance: object) -> T:
    """`check(instance)`, or when the validator cannot read the instance's text, `check` of the cleaned copy."""
    try:
        return check(instance)
    except UnicodeEncodeError:
        return check(without_lone_surrogates(instance))


def is_valid(validator: jsonschema_rs.Validator, instance: object) -> bool:
    """`validator.is_valid`, for any decoded JSON: a lone surrogate is judged as U+FFFD."""
    return _on_readable_text(validator.is_valid, instance)


def schema_errors(
    validator: jsonschema_rs.Validator, instance: object
) -> list[jsonschema_rs.ValidationError]:
    """Every error `validator.iter_errors` finds, for any decoded JSON: a lone surrogate is judged as U+FFFD.

    Listed inside the guard: the iterator can fail on such text midway (an error quoting it), where is_valid
    did not.
    """
    return _on_readable_text(lambda value: list(validator.iter_errors(value)), instance)


def format_path(parts: Sequence[str | int]) -> str:
    """`events[3].attributes[0].value`: the field path as a reader of the request would write it."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _IDENTIFIER.match(part):
            text += f".{part}" if text else part
        else:
            text += f"[{json.dumps(part, ensure_ascii=False)}]"
    return text


def error_location(error: jsonschema_rs.ValidationError) -> list[str | int]:
    """The instance path of an error; a missing property is named as part of the path."""
    parts = list(error.instance_path)
    if isinstance(error.kind, jsonschema_rs.ValidationErrorKind.Required):
        parts.append(str(error.kind.property))
    return parts


def describe(error: jsonschema_rs.ValidationError) -> str:
    """One error as `<field path>: <rule broken>`."""
    location = format_path(error_location(error))
    return f"{location}: {error.message}" if location else error.message


@frozen
class TogaiRules:
    """What the Togai spec says about request bodies."""

    ingest: jsonschema_rs.Validator
    batch_envelope: jsonschema_rs.Validator
    event: jsonschema_rs.Validator
    max_batch_events: int
    ingest_max_bytes: int | None
    batch_max_bytes: int | None

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> TogaiRules:
        envelope, _min_items, max_items = envelope_of(spec, "IngestBatchEventRequest", "events")
        return cls(
            ingest=compile_component(spec, "IngestEventRequest"),
            batch_envelope=compile_schema(spec, envelope),
            event=compile_component(spec, "Event"),
            max_batch_events=max_items,
            ingest_max_bytes=max_body_bytes(spec, "/ingest", "post"),
            batch_max_bytes=max_body_bytes(spec, "/ingestBatch", "post"),
        )


@frozen
class LagoRules:
    """What the Lago spec says about request bodies."""

    event: jsonschema_rs.Validator
    estimate_event: jsonschema_rs.Validator
    min_batch_events: int
    max_batch_events: int
    create_max_bytes: int | None
    batch_max_bytes: int | None
    estimate_max_bytes: int | None

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> LagoRules:
        _envelope, min_items, max_items = envelope_of(spec, "EventBatchInput", "events")
        return cls(
            event=compile_component(spec, "EventInputObject"),
            estimate_event=compile_component(spec, "EventEstimateFeesInputObject"),
            min_batch_events=min_items,
            max_batch_events=max_items,
            create_max_bytes=max_body_bytes(spec, "/events", "post"),
            batch_max_bytes=max_body_bytes(spec, "/events/batch", "post"),
            estimate_max_bytes=max_body_bytes(spec, "/events/estimate_fees", "post"),
        )


@frozen
class SpecRules:
    togai: TogaiRules
    lago: LagoRules

    @classmethod
    def load(cls, specs_dir: Path) -> SpecRules:
        return cls(
            togai=TogaiRules.from_spec(load_spec(spec_file(specs_dir, "togai"))),
            lago=LagoRules.from_spec(load_spec(spec_file(specs_dir, "lago"))),
        )


def spec_file(specs_dir: Path, provider: str) -> Path:
    """`<provider>.json` when the directory has one, otherwise `<provider>.yaml`."""
    json_path = specs_dir / f"{provider}.json"
    return json_path if json_path.is_file() else specs_dir / f"{provider}.yaml"
