"""Read-only access to the OpenAPI documents in specs/, shared by the spec tests.

Everything here works on the YAML as written (no pre-resolved copy), so that a
test names the exact place in a spec that is wrong.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from referencing import Registry
from referencing.jsonschema import DRAFT202012

REPO_ROOT = Path(__file__).resolve().parents[2]
SPECS_DIR = REPO_ROOT / "specs"
GENERATED_DIR = REPO_ROOT / "generated"
PROVIDERS = ("togai", "lago")
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# Keywords whose value is one sub-schema, a map of sub-schemas, or a list of them.
_SINGLE_SUBSCHEMA = (
    "additionalProperties",
    "items",
    "not",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
    "if",
    "then",
    "else",
)
_MAP_OF_SUBSCHEMAS = ("properties", "patternProperties", "$defs", "dependentSchemas")
_LIST_OF_SUBSCHEMAS = ("allOf", "anyOf", "oneOf", "prefixItems")


def pointer_join(pointer: str, *tokens: str | int) -> str:
    """Append tokens to a JSON pointer, escaping them as RFC 6901 requires."""
    escaped = (str(token).replace("~", "~0").replace("/", "~1") for token in tokens)
    return "/".join((pointer, *escaped))


def pointer_tokens(pointer: str) -> list[str]:
    if not pointer:
        return []
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


@dataclass(frozen=True)
class Operation:
    spec: SpecDocument
    operation_id: str
    method: str
    path: str
    pointer: str

    @property
    def node(self) -> Mapping[str, Any]:
        node: Mapping[str, Any] = self.spec.at(self.pointer)
        return node


@dataclass(frozen=True)
class SpecExample:
    """One example value written in a spec, with the schema it claims to satisfy."""

    test_id: str
    spec: SpecDocument
    schema_pointer: str
    value: Any
    location: str  # "request", "response", "parameter" or "schema"
    operation_id: str | None = None
    status: str | None = None

    @property
    def schema_name(self) -> str | None:
        """The components/schemas name the example is written for, if it is a named schema."""
        return self.spec.schema_name_at(self.schema_pointer)


@dataclass(frozen=True)
class SpecDocument:
    provider: str
    document: Mapping[str, Any] = field(repr=False)

    @property
    def path(self) -> Path:
        return SPECS_DIR / f"{self.provider}.yaml"

    @property
    def base_uri(self) -> str:
        return f"https://specs.invalid/{self.provider}.yaml"

    def at(self, pointer: str) -> Any:
        node: Any = self.document
        for token in pointer_tokens(pointer):
            if isinstance(node, list):
                node = node[int(token)]
            elif token not in node and token.isdigit() and int(token) in node:
                node = node[int(token)]  # an unquoted YAML key such as a bare `202:`
            else:
                node = node[token]
        return node

    def follow(self, pointer: str) -> tuple[str, Any]:
        """Follow local `$ref`s from `pointer`; return where they end and what is there."""
        node = self.at(pointer)
        seen = {pointer}
        while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
            reference: str = node["$ref"]
            if not reference.startswith("#"):
                raise ValueError(
                    f"{self.provider}.yaml{pointer}: only local $refs are supported, got {reference}"
                )
            pointer = reference[1:]
            if pointer in seen:
                raise ValueError(f"{self.provider}.yaml: $ref cycle through {pointer}")
            seen.add(pointer)
            node = self.at(pointer)
        return pointer, node

    def schema_name_at(self, schema_pointer: str) -> str | None:
        node = self.at(schema_pointer)
        if isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
            schema_pointer = node["$ref"][1:]
        tokens = pointer_tokens(schema_pointer)
        if len(tokens) == 3 and tokens[:2] == ["components", "schemas"]:
            return tokens[2]
        return None

    @functools.cached_property
    def registry(self) -> Registry[Any]:
        registry: Registry[Any] = Registry().with_resource(
            self.base_uri, DRAFT202012.create_resource(self.document)
        )
        return registry

    def validator(self, schema_pointer: str) -> Any:
        """A Draft 2020-12 validator (format checks on) for the schema at `schema_pointer`."""
        reference = f"{self.base_uri}#{quote(schema_pointer, safe='/~')}"
        return Draft202012Validator(
            {"$ref": reference},
            registry=self.registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )

    def operations(self) -> list[Operation]:
        found = []
        for path, path_item in self.document.get("paths", {}).items():
            for method in HTTP_METHODS:
                if method in path_item:
                    pointer = pointer_join("", "paths", path, method)
                    found.append(Operation(self, path_item[method]["operationId"], method, path, pointer))
        return found

    def operation(self, operation_id: str) -> Operation:
        (match,) = [op for op in self.operations() if op.operation_id == operation_id]
        return match

    def parameter_pointers(self, operation: Operation) -> list[str]:
        """Path-level and operation-level parameters, each followed to its definition."""
        path_item_pointer = operation.pointer.rsplit("/", 1)[0]
        pointers = []
        for owner in (path_item_pointer, operation.pointer):
            for index, _ in enumerate(self.at(owner).get("parameters", [])):
                pointers.append(self.follow(pointer_join(owner, "parameters", index))[0])
        return pointers

    def request_body_pointer(self, operation: Operation) -> str | None:
        if "requestBody" not in operation.node:
            return None
        return self.follow(pointer_join(operation.pointer, "requestBody"))[0]

    def response_pointers(self, operation: Operation) -> dict[str, str]:
        """Status key (as written) -> pointer of the response object, `$ref`s followed."""
        responses = pointer_join(operation.pointer, "responses")
        return {
            str(status): self.follow(pointer_join(responses, str(status)))[0]
            for status in operation.node.get("responses", {})
        }

    def examples(self) -> list[SpecExample]:
        """Every example in the document: media types, parameters and schema `examples`."""
        found: list[SpecExample] = []
        for operation in self.operations():
            prefix = f"{self.provider}:{operation.operation_id}"
            body = self.request_body_pointer(operation)
            if body is not None:
                found += self._media_examples(
                    body, f"{prefix}:request", "request", operation.operation_id, None
                )
            for status, response in self.response_pointers(operation).items():
                found += self._media_examples(
                    response, f"{prefix}:{status}", "response", operation.operation_id, status
                )
            for parameter in self.parameter_pointers(operation):
                name = self.at(parameter)["name"]
                found += self._examples_of(
                    parameter,
                    pointer_join(parameter, "schema"),
                    f"{prefix}:parameter-{name}",
                    "parameter",
                    operation.operation_id,
                    None,
                )
        for schema_pointer, schema in self.schemas():
            for index, value in enumerate(schema.get("examples", [])):
                found.append(
                    SpecExample(
                        f"{self.provider}:schema{schema_pointer}:examples[{index}]",
                        self,
                        schema_pointer,
                        value,
                        "schema",
                    )
                )
            if "example" in schema:
                found.append(
                    SpecExample(
                        f"{self.provider}:schema{schema_pointer}:example",
                        self,
                        schema_pointer,
                        schema["example"],
                        "schema",
                    )
                )
        return found

    def _media_examples(
        self, owner: str, prefix: str, location: str, operation_id: str, status: str | None
    ) -> list[SpecExample]:
        found: list[SpecExample] = []
        for media_type in self.at(owner).get("content", {}):
            media_pointer = pointer_join(owner, "content", media_type)
            found += self._examples_of(
                media_pointer,
                pointer_join(media_pointer, "schema"),
                f"{prefix}:{media_type}",
                location,
                operation_id,
                status,
            )
        return found

    def _examples_of(
        self,
        owner: str,
        schema_pointer: str,
        prefix: str,
        location: str,
        operation_id: str,
        status: str | None,
    ) -> list[SpecExample]:
        node = self.at(owner)
        found = []
        if "example" in node:
            found.append(
                SpecExample(
                    f"{prefix}:example", self, schema_pointer, node["example"], location, operation_id, status
                )
            )
        for name in node.get("examples", {}):
            example_pointer, example = self.follow(pointer_join(owner, "examples", name))
            if "value" not in example:
                raise ValueError(f"{self.provider}.yaml#{example_pointer}: example has no inline `value`")
            found.append(
                SpecExample(
                    f"{prefix}:{name}", self, schema_pointer, example["value"], location, operation_id, status
                )
            )
        return found

    def schemas(self) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """Every schema object written in the document (`$ref`-only nodes excepted), once."""
        roots = [pointer_join("", "components", "schemas", name) for name in self._components("schemas")]
        for operation in self.operations():
            owners = [*self.parameter_pointers(operation), *self.response_pointers(operation).values()]
            body = self.request_body_pointer(operation)
            if body is not None:
                owners.append(body)
            for owner in owners:
                roots += self._schemas_in(owner)
        for kind in ("responses", "requestBodies", "parameters", "headers"):
            for name in self._components(kind):
                roots += self._schemas_in(pointer_join("", "components", kind, name))
        seen: set[str] = set()
        pending = list(reversed(roots))
        while pending:
            pointer = pending.pop()
            if pointer in seen:
                continue
            seen.add(pointer)
            schema = self.at(pointer)
            if not isinstance(schema, Mapping):
                continue  # a boolean schema
            if set(schema) - {"$ref", "description", "summary"}:
                yield pointer, schema
            children: list[str] = []
            for keyword in _SINGLE_SUBSCHEMA:
                if isinstance(schema.get(keyword), Mapping):
                    children.append(pointer_join(pointer, keyword))
            for keyword in _MAP_OF_SUBSCHEMAS:
                children += [pointer_join(pointer, keyword, name) for name in schema.get(keyword, {})]
            for keyword in _LIST_OF_SUBSCHEMAS:
                children += [
                    pointer_join(pointer, keyword, index) for index, _ in enumerate(schema.get(keyword, []))
                ]
            pending += reversed(children)

    def _components(self, kind: str) -> list[str]:
        return list(self.document.get("components", {}).get(kind, {}))

    def _schemas_in(self, owner: str) -> list[str]:
        """Schemas held by a parameter, header, request body or response (with its headers)."""
        pointer, node = self.follow(owner)
        found = []
        if "schema" in node:
            found.append(pointer_join(pointer, "schema"))
        for media_type in node.get("content", {}):
            if "schema" in node["content"][media_type]:
                found.append(pointer_join(pointer, "content", media_type, "schema"))
        for header in node.get("headers", {}):
            found += self._schemas_in(pointer_join(pointer, "headers", header))
        return found

    def comparable(self, schema_pointer: str, instance: Any) -> Any:
        """`instance` in a form where equal means the same JSON value to a reader of the spec.

        Strings the schema marks `format: date-time` become (instant, UTC offset) so that
        `Z`, `+00:00` and extra zero fractions compare equal while a lost offset does not;
        booleans are tagged so that `true` never equals `1`.
        """
        schema_pointer, schema = self.follow(schema_pointer)
        if isinstance(instance, bool):
            return ("boolean", instance)
        if not isinstance(schema, Mapping):
            return _plain_comparable(instance)
        if isinstance(instance, str) and schema.get("format") == "date-time":
            try:
                moment = datetime.datetime.fromisoformat(instance)
            except ValueError:
                return instance
            return ("date-time", moment, moment.utcoffset())
        for keyword in ("anyOf", "oneOf"):
            for index, _ in enumerate(schema.get(keyword, [])):
                branch = pointer_join(schema_pointer, keyword, index)
                if self.validator(branch).is_valid(instance):
                    return self.comparable(branch, instance)
        if isinstance(instance, Mapping):
            properties = schema.get("properties", {})
            result = {}
            for key, value in instance.items():
                if key in properties:
                    result[key] = self.comparable(pointer_join(schema_pointer, "properties", key), value)
                elif isinstance(schema.get("additionalProperties"), Mapping):
                    result[key] = self.comparable(pointer_join(schema_pointer, "additionalProperties"), value)
                else:
                    result[key] = _plain_comparable(value)
            return result
        if isinstance(instance, list) and isinstance(schema.get("items"), Mapping):
            return [self.comparable(pointer_join(schema_pointer, "items"), item) for item in instance]
        return _plain_comparable(instance)


def _plain_comparable(instance: Any) -> Any:
    if isinstance(instance, bool):
        return ("boolean", instance)
    if isinstance(instance, Mapping):
        return {key: _plain_comparable(value) for key, value in instance.items()}
    if isinstance(instance, list):
        return [_plain_comparable(item) for item in instance]
    return instance


@functools.cache
def load_spec(provider: str) -> SpecDocument:
    with (SPECS_DIR / f"{provider}.yaml").open(encoding="utf-8") as stream:
        document = yaml.safe_load(stream)
    return SpecDocument(provider, document)


def all_examples() -> list[SpecExample]:
    return [example for provider in PROVIDERS for example in load_spec(provider).examples()]
