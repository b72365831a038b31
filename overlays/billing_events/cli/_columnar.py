"""Parquet and Arrow IPC input: typed columns mapped to events, read one record batch at a time.

The columns are those of CSV (``_csv``), with typed values, plus nested columns:
Togai ``attributes`` (a list of structs with ``name``, ``value``, ``unit``, or a
map of name to value) and
``dimensions`` (a struct or a map of strings); Lago ``properties`` (a struct or
a map). A null leaves its field out, like an empty CSV cell.

Values become what the API's JSON takes: Togai attribute values and dimensions
are sent as strings (an integer ``3`` as ``"3"``), a timestamp column becomes
RFC 3339 (Togai) or Unix seconds (Lago), a decimal becomes a string. Lago
properties keep their types. A value that has no JSON form (binary) makes its
row invalid, with the column named.

pyarrow comes with the ``parquet`` extra; it is imported only when a columnar
file is read, so the CLI works without it for JSONL and CSV.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from . import _csv
from ._text import clip

EXTRA_HINT = "pip install 'billing-events[parquet]'"
# Rows per record batch read from the file: bounds the memory of one read, whatever the file's size.
BATCH_ROWS = 8192
# Nested columns each provider takes, beside the CSV layout's flat ones.
NESTED = {"togai": ("attributes", "dimensions"), "lago": ("properties",)}


class ColumnarError(Exception):
    """The file cannot be read as Parquet or Arrow, or pyarrow is missing."""


class RowProblem(Exception):
    """One row cannot become an event; the message names the column and the rule."""


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet
    except ImportError as exc:
        raise ColumnarError(f"reading Parquet or Arrow files needs pyarrow: {EXTRA_HINT}") from exc
    return pyarrow


def _ipc_reader(path: Path) -> Any:
    pa = _pyarrow()
    source = pa.memory_map(str(path))
    try:
        return pa.ipc.open_file(source)
    except pa.ArrowInvalid:
        source.seek(0)
        return pa.ipc.open_stream(source)


def open_columnar(path: Path, fmt: str) -> tuple[list[str], int | None]:
    """The file's column names and row count (None for an Arrow stream, whose count is not stored)."""
    pa = _pyarrow()
    try:
        if fmt == "parquet":
            meta = pa.parquet.ParquetFile(str(path))
            return list(meta.schema_arrow.names), int(meta.metadata.num_rows)
        reader = _ipc_reader(path)
        if isinstance(reader, pa.ipc.RecordBatchFileReader):
            rows = sum(reader.get_batch(index).num_rows for index in range(reader.num_record_batches))
            return list(reader.schema.names), rows
        return list(reader.schema.names), None
    except (OSError, pa.ArrowException) as exc:
        raise ColumnarError(f"cannot read {path} as {fmt}: {clip(str(exc))}") from exc


def batches(path: Path, fmt: str) -> Iterator[list[dict[str, Any]]]:
    """The file's rows as dicts, one record batch at a time."""
    pa = _pyarrow()
    try:
        if fmt == "parquet":
            with pa.parquet.ParquetFile(str(path)) as reader:
                for batch in reader.iter_batches(batch_size=BATCH_ROWS):
                    yield batch_rows(batch)
            return
        reader = _ipc_reader(path)
        if isinstance(reader, pa.ipc.RecordBatchFileReader):
            for index in range(reader.num_record_batches):
                yield from _split(reader.get_batch(index))
        else:
            for batch in reader:
                yield from _split(batch)
    except (OSError, pa.ArrowException) as exc:  # pyarrow reports damaged pages and cut streams as OSError
        raise ColumnarError(f"cannot read {path} as {fmt}: {clip(str(exc))}") from exc


def _split(batch: Any) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, batch.num_rows, BATCH_ROWS):
        yield batch_rows(batch.slice(start, BATCH_ROWS))


class Unreadable:
    """A value pyarrow cannot give as a Python object (a nanosecond timestamp without pandas, say)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def batch_rows(batch: Any) -> list[dict[str, Any]]:
    """The batch's rows; a value that cannot be converted is its row's problem, not the whole file's."""
    try:
        rows: list[dict[str, Any]] = batch.to_pylist()
    except (ValueError, OverflowError):  # a date past year 9999, a duration past timedelta's range
        columns = [_values(column) for column in batch.columns]
        return [dict(zip(batch.schema.names, values, strict=True)) for values in zip(*columns, strict=True)]
    return rows


def _values(column: Any) -> list[Any]:
    try:
        values: list[Any] = column.to_pylist()
    except (ValueError, OverflowError):
        return [_value(scalar) for scalar in column]
    return values


def _value(scalar: Any) -> Any:
    try:
        return scalar.as_py()
    except (ValueError, OverflowError) as exc:
        if getattr(scalar.type, "unit", None) == "ns":
            return Unreadable(
                "a time in nanoseconds needs pandas to be read (pip install pandas), or store it in microseconds"
            )
        return Unreadable(f"cannot be read: {clip(str(exc), 100)}")


def column_problems(provider: str, columns: list[str]) -> list[str]:
    """The CSV header rules, with the provider's nested columns allowed as well."""
    nested = NESTED[provider]
    flat = [column for column in columns if column not in nested]
    check = _csv.togai_header_problems if provider == "togai" else _csv.lago_header_problems
    # A nested column given twice would keep one of them without a word: which to bill is not ours to choose.
    twice = sorted({column for column in columns if column in nested and columns.count(column) > 1})
    return [f"column {column!r} appears twice" for column in twice] + check(flat)


# ---- values ---------------------------------------------------------------------------------------


# JSON integers are exchanged as 64-bit numbers: a larger one would lose digits, or fail to encode.
INT_RANGE = range(-(2**63), 2**64)
# A decimal is written in plain digits: one that needs more digits than this to write out is refused.
MAX_DECIMAL_DIGITS = 100


_PLAIN = (str, bool)


def _json_value(value: object, column: str) -> object:
    """A value as the API's JSON takes it; containers are converted item by item."""
    # Every value of every row comes here: the common exact types first, without isinstance.
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return value
    if kind is int and value in INT_RANGE:
        return value
    if kind is float and math.isfinite(value):  # type: ignore[arg-type]
        return value
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Unreadable):
        raise RowProblem(f"{column}: {value.reason}")
    if isinstance(value, numbers.Integral):
        # An int subclass (an IntEnum) or numpy's integers, as a plain int: a subclass's "in range"
        # would compare it with every integer of the range in turn.
        number = int(value)
        if not INT_RANGE.start <= number < INT_RANGE.stop:
            raise RowProblem(
                f"{column}: an integer of {number.bit_length()} bits does not fit in 64 bits; store it as text"
            )
        return number
    if isinstance(value, numbers.Real) and not isinstance(value, decimal.Decimal):
        real = float(value)  # a float subclass (numpy's), numpy's float32: JSON writers know a float
        if not math.isfinite(real):
            raise RowProblem(f"{column}: {value} is not a number JSON can carry")
        return real
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise RowProblem(f"{column}: {value} is not a number JSON can carry")
        if _plain_digits(value) > MAX_DECIMAL_DIGITS:
            raise RowProblem(
                f"{column}: a decimal written in plain digits must have at most {MAX_DECIMAL_DIGITS}"
            )
        # "f": plain digits; str() writes 0E-10 or 1.000E-7, which the providers' number patterns refuse.
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return _rfc3339(value, column)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(name): _json_value(item, _member(column, name)) for name, item in value.items()}
    if isinstance(value, list):
        # An Arrow map (pairs). An empty one cannot be told from an empty list: it stays a list, which
        # _mapping takes for an empty map where a map is expected.
        if value and all(isinstance(item, tuple) and len(item) == 2 for item in value):
            mapped = {str(name): _json_value(item, _member(column, name)) for name, item in value}
            if len(mapped) < len(value):
                # Which of its values the provider should bill is not ours to choose.
                twice = next(name for name in mapped if sum(str(pair[0]) == name for pair in value) > 1)
                raise RowProblem(f"{column}: the map holds the key {clip(repr(twice), 80)} more than once")
            return mapped
        return [_json_value(item, f"{column}[{index}]") for index, item in enumerate(value)]
    raise RowProblem(f"{column}: a {type(value).__name__} value has no JSON form")


def _member(column: str, name: object) -> str:
    """How a message names a member of a map or struct: a long name is cut, so the rule after it stays."""
    return f"{column}.{clip(str(name), 80)}"


def _plain_digits(value: decimal.Decimal) -> int:
    """How many digits ``format(value, "f")`` writes."""
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # a finite decimal's
    whole = 1 if value.is_zero() else max(value.adjusted(), 0) + 1
    return whole + max(-exponent, 0)


def _text(value: object, column: str) -> str:
    """Togai's string fields: numbers are written out, everything else must already be text."""
    if type(value) is str:
        return value  # the common case, without the checks below
    plain = _json_value(value, column)
    if isinstance(plain, bool) or not isinstance(plain, str | int | float):
        raise RowProblem(f"{column}: expected text or a number, got {type(value).__name__}")
    if isinstance(plain, float):
        # The shortest digits that read back as this float, written without an exponent (1e-05 is refused).
        # float(): a subclass's repr may not be digits (numpy 2 writes np.float64(1.5)).
        return format(decimal.Decimal(repr(float(plain))), "f")
    return plain if isinstance(plain, str) else str(plain)


def _aware(value: dt.datetime, column: str) -> dt.datetime:
    if value.tzinfo is None:
        raise RowProblem(
            f"{column}: a timestamp without a time zone is ambiguous; store it as UTC (timestamp[us, tz=UTC])"
        )
    return value


def _out_of_range(value: dt.datetime, column: str) -> RowProblem:
    return RowProblem(f"{column}: {value} is out of the range of a timestamp")


def _rfc3339(value: dt.datetime, column: str) -> str:
    try:
        utc = _aware(value, column).astimezone(dt.UTC)
    except OverflowError:  # in UTC it falls before year 1 or after year 9999
        raise _out_of_range(value, column) from None
    return utc.isoformat().replace("+00:00", "Z")


def _unix(value: object, column: str) -> object:
    if isinstance(value, dt.datetime):
        try:
            seconds = _aware(value, column).timestamp()
        except OverflowError:
            raise _out_of_range(value, column) from None
        return int(seconds) if seconds.is_integer() else round(seconds, 3)
    return _json_value(value, column)


def _mapping(value: object, column: str) -> dict[str, object]:
    plain = {} if isinstance(value, list) and not value else _json_value(value, column)
    if isinstance(value, str):
        raise RowProblem(f"{column}: expected a struct or a map, got text")
    if not isinstance(plain, dict):
        raise RowProblem(f"{column}: expected a struct or a map, got {type(value).__name__}")
    return {name: item for name, item in plain.items() if item is not None}


# ---- rows to events -------------------------------------------------------------------------------


_ATTRIBUTE_FIELDS = {"name", "value", "unit"}


def _is_map(value: object) -> bool:
    """A struct or map value (a dict, or an Arrow map's (key, value) pairs), not a list of structs."""
    if isinstance(value, Mapping):
        return True
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, tuple) and len(item) == 2 for item in value)
    )


def _twice(column: str, nested: str) -> RowProblem:
    """A field given both by a flat column and by the nested one: which value to bill is not ours to choose."""
    return RowProblem(f"{column}: {nested} holds the same field too; give it in one of the two columns")


def togai_row_to_event(row: Mapping[str, object]) -> dict[str, object]:
    event: dict[str, object] = {}
    for name in ("schemaName", "id", "accountId"):
        if row.get(name) is not None:
            event[name] = _text(row[name], name)
    stamp = row.get("timestamp")
    if stamp is not None:
        event["timestamp"] = (
            _rfc3339(stamp, "timestamp")
            if isinstance(stamp, dt.datetime)
            else _json_value(stamp, "timestamp")
        )
    attributes: list[dict[str, str]] = []
    nested = row.get("attributes")
    if nested is not None and _is_map(nested):
        # A map (or struct) of attribute name to value: each entry an attribute without a unit.
        fields = set(map(str, nested)) if isinstance(nested, Mapping) else set()
        if len(fields) >= 2 and fields <= _ATTRIBUTE_FIELDS:
            # One attribute's struct, not in a list (its nulls too): read as a map it would bill attributes
            # called name, value or unit. An Arrow map's pairs are never a struct, whatever their keys.
            raise RowProblem(
                "attributes: one struct (name, value, unit) where a list of them is expected; wrap it in a list"
            )
        attributes = [
            {"name": name, "value": _text(value, _member("attributes", name))}
            for name, value in _mapping(nested, "attributes").items()
        ]
    elif nested is not None:
        if not isinstance(nested, list):
            raise RowProblem(
                f"attributes: expected a list of structs (name, value, unit) or a map of name to value,"
                f" got {type(nested).__name__}"
            )
        for index, item in enumerate(nested):
            entry = _mapping(item, f"attributes[{index}]")
            attributes.append(
                {name: _text(value, f"attributes[{index}].{name}") for name, value in entry.items()}
            )
    dimensions: dict[str, str] = {}
    if row.get("dimensions") is not None:
        dimensions = {
            name: _text(value, _member("dimensions", name))
            for name, value in _mapping(row["dimensions"], "dimensions").items()
        }
    nested_names = {attribute.get("name") for attribute in attributes}
    nested_dimensions = set(dimensions)
    for column, value in row.items():
        if value is None:
            continue
        if column.startswith("attr."):
            name = column[len("attr.") :]
            if name in nested_names:
                raise _twice(column, "attributes")
            attribute = {"name": name, "value": _text(value, column)}
            unit = row.get(f"unit.{name}")
            if unit is not None:
                attribute["unit"] = _text(unit, f"unit.{name}")
            attributes.append(attribute)
        elif column.startswith("unit.") and f"attr.{column[len('unit.') :]}" not in row:
            raise RowProblem(
                f"{clip(column, 80)}: has no matching attr.{clip(column[len('unit.') :], 80)} column; a unit"
                " column goes with an attr.<name> column (in the attributes column, give a struct its unit)"
            )
        elif column.startswith("dim."):
            if column[len("dim.") :] in nested_dimensions:
                raise _twice(column, "dimensions")
            dimensions[column[len("dim.") :]] = _text(value, column)
    event["attributes"] = attributes
    event["dimensions"] = dimensions
    return event


def lago_row_to_event(row: Mapping[str, object]) -> dict[str, object]:
    event: dict[str, object] = {}
    for name in ("transaction_id", "external_subscription_id", "code"):
        if (value := row.get(name)) is not None:
            event[name] = _text(value, name)
    if (stamp := row.get("timestamp")) is not None:
        event["timestamp"] = _unix(stamp, "timestamp")
    if (amount := row.get("precise_total_amount_cents")) is not None:
        event["precise_total_amount_cents"] = _text(amount, "precise_total_amount_cents")
    properties: dict[str, object] = {}
    if (nested := row.get("properties")) is not None:
        properties = _mapping(nested, "properties")
    nested = set(properties)
    for column, value in row.items():
        if value is not None and column.startswith("prop."):
            if column[len("prop.") :] in nested:
                raise _twice(column, "properties")
            properties[column[len("prop.") :]] = _json_value(value, column)
    if properties:
        event["properties"] = properties
    return event


ROW_TO_EVENT: dict[str, Callable[[Mapping[str, object]], dict[str, object]]] = {
    "togai": togai_row_to_event,
    "lago": lago_row_to_event,
}


def row_to_event(provider: str, row: Mapping[str, object]) -> tuple[dict[str, object] | None, str | None]:
    """The row's event, or why it has none (``RowProblem``'s text, clipped)."""
    try:
        return ROW_TO_EVENT[provider](row), None
    except RowProblem as exc:
        return None, clip(str(exc))
    except MemoryError:
        raise  # the machine's problem, not the row's: the row must not be settled as rejected
    except Exception as exc:
        # A backfill's rows are whatever the engine holds (a Bag of anything, values of any type): what
        # breaks on one row is that row's problem, never the end of its partition.
        problem = _shape_problem(row)
        if problem is None:
            problem = clip(f"row: could not be made into an event ({type(exc).__name__}: {exc})")
        return None, problem


def _shape_problem(row: object) -> str | None:
    """Why ``row`` is not a mapping of column names to values, if it is not."""
    if not isinstance(row, Mapping):
        return f"row: expected a mapping of column names to values, got {type(row).__name__}"
    odd = next((name for name in row if not isinstance(name, str)), None)
    if odd is not None:
        return f"row: column names must be text, not {type(odd).__name__}"
    return None
