"""How CSV columns map to event fields, per provider.

Togai: ``schemaName``, ``id``, ``timestamp``, ``accountId``; ``attr.<name>``
for an attribute's value, ``unit.<name>`` for its unit, ``dim.<name>`` for a
dimension. Lago: ``transaction_id``, ``external_subscription_id``, ``code``,
``timestamp``, ``precise_total_amount_cents``; ``prop.<name>`` for a property.
An empty cell leaves its field out. Cells are text, so Lago properties are
sent as strings (Lago accepts numeric strings for its aggregations).
"""

from __future__ import annotations

from attrs import frozen


@frozen
class CsvLayout:
    """The columns one provider's CSV files may have."""

    fixed: tuple[str, ...]
    required: tuple[str, ...]
    prefixes: tuple[str, ...]

    def header_problems(self, header: list[str]) -> list[str]:
        problems: list[str] = []
        seen: set[str] = set()
        for column in header:
            if column in seen:
                problems.append(f"column {column!r} appears twice")
            seen.add(column)
            prefix = next((p for p in self.prefixes if column.startswith(p)), None)
            if column not in self.fixed and (prefix is None or column == prefix):
                problems.append(
                    f"unknown column {column!r} (expected {', '.join(self.fixed)}"
                    f" or {', '.join(p + '<name>' for p in self.prefixes)})"
                )
        problems.extend(f"missing column {name!r}" for name in self.required if name not in seen)
        return problems


TOGAI_LAYOUT = CsvLayout(
    fixed=("schemaName", "id", "timestamp", "accountId"),
    required=("schemaName", "timestamp", "accountId"),
    prefixes=("attr.", "unit.", "dim."),
)

LAGO_LAYOUT = CsvLayout(
    fixed=("transaction_id", "external_subscription_id", "code", "timestamp", "precise_total_amount_cents"),
    required=("external_subscription_id", "code"),
    prefixes=("prop.",),
)


def togai_header_problems(header: list[str]) -> list[str]:
    problems = TOGAI_LAYOUT.header_problems(header)
    attributes = {column[len("attr.") :] for column in header if column.startswith("attr.")}
    problems.extend(
        f"column {column!r} has no matching 'attr.{column[len('unit.') :]}' column"
        for column in header
        if column.startswith("unit.") and column[len("unit.") :] not in attributes
    )
    return problems


def lago_header_problems(header: list[str]) -> list[str]:
    return LAGO_LAYOUT.header_problems(header)


def togai_row_to_event(row: dict[str, str]) -> dict[str, object]:
    event: dict[str, object] = {name: row[name] for name in TOGAI_LAYOUT.fixed if row.get(name)}
    attributes: list[dict[str, str]] = []
    dimensions: dict[str, str] = {}
    for column, cell in row.items():
        if not cell:
            continue
        if column.startswith("attr."):
            name = column[len("attr.") :]
            attribute = {"name": name, "value": cell}
            unit = row.get(f"unit.{name}")
            if unit:
                attribute["unit"] = unit
            attributes.append(attribute)
        elif column.startswith("dim."):
            dimensions[column[len("dim.") :]] = cell
    event["attributes"] = attributes
    event["dimensions"] = dimensions
    return event


def lago_row_to_event(row: dict[str, str]) -> dict[str, object]:
    event: dict[str, object] = {name: row[name] for name in LAGO_LAYOUT.fixed if row.get(name)}
    properties = {
        column[len("prop.") :]: cell for column, cell in row.items() if cell and column.startswith("prop.")
    }
    if properties:
        event["properties"] = properties
    return event
