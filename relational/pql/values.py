"""What a column holds, checked at bind time: constants compared with it must fit its type, and a column
with two classes is a binary target (which class is positive is decided here, once)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

import polars as pl

from relational.normalise import to_epoch_seconds
from relational.pql import ast as nodes
from relational.pql.bound import BoundAggregation, ParentColumn
from relational.pql.errors import QueryError
from relational.schema import GraphSchema

__all__ = ["checked_literal", "column_of", "positive_class", "stype_of"]

_NUMERIC_FUNCTIONS = {"SUM", "AVG", "MIN", "MAX"}
_TEXT_TYPES = (pl.String, pl.Categorical, pl.Enum)
# Two classes that read as yes/no: the first of each pair is the positive class (case-insensitive).
_PAIRS = (("true", "false"), ("yes", "no"), ("y", "n"), ("1", "0"), ("t", "f"))


class _Binder(Protocol):
    schema: GraphSchema
    tables: Mapping[str, pl.DataFrame]

    def error(self, message: str, position: int) -> QueryError: ...


def stype_of(schema: GraphSchema, node: object) -> str | None:
    """The semantic type a value has: a column's stype, or what an aggregation gives."""
    if isinstance(node, BoundAggregation):
        if node.function in {"COUNT", "COUNT_DISTINCT"}:
            return "count"
        if node.function in _NUMERIC_FUNCTIONS:
            return node.column_stype if node.column_stype == "timestamp" else "numerical"
        return node.column_stype
    if isinstance(node, nodes.Column | ParentColumn):
        return schema.tables[node.table].stypes[node.column]
    return None


def column_of(tables: Mapping[str, pl.DataFrame], node: object) -> pl.Series | None:
    """The data column a value reads its values from (None for counts and sums, or without tables)."""
    if isinstance(node, BoundAggregation):
        if node.function not in {"FIRST", "LAST"} or node.column is None:
            return None
        table, column = node.table, node.column
    elif isinstance(node, nodes.Column | ParentColumn):
        table, column = node.table, node.column
    else:
        return None
    frame = tables.get(table)
    return frame.get_column(column) if frame is not None and column in frame.columns else None


def _name(node) -> str:
    if isinstance(node, BoundAggregation):
        return f"{node.function}({node.table}.{node.column or '*'})"
    return str(node)


def checked_literal(
    binder: _Binder, left: object, literal: nodes.Literal, fix: Callable[[nodes.Literal], str]
) -> nodes.Literal:
    """Check a constant against what it is compared with; dates become epoch seconds for time columns.

    ``fix(replacement)`` renders the whole query with the constant replaced, for the error message.
    """
    if literal.kind == "null":
        return literal
    if isinstance(left, BoundAggregation) and left.function == "LIST_DISTINCT":
        raise binder.error(
            "LIST_DISTINCT gives a set of values, which cannot be compared with a constant: predict the set "
            "(RANK TOP K or CLASSIFY), or compare COUNT_DISTINCT or FIRST/LAST",
            left.position,
        )
    stype = stype_of(binder.schema, left)
    series = column_of(binder.tables, left)
    dtype = series.dtype if series is not None else None
    if stype == "timestamp":
        if literal.kind in {"string", "datetime"}:
            parsed = to_epoch_seconds(pl.Series([literal.value])).seconds[0]
            if parsed is None:
                raise binder.error(f"{literal.value!r} is not a date or time (use 2024-01-31 or 2024-01-31 12:00:00)",
                                   literal.position)  # fmt: skip
            return nodes.Literal(int(parsed), "number", literal.position)
        if literal.kind != "number":
            raise binder.error("compare a time column with a date such as '2024-01-31'", literal.position)
        return literal
    textual = isinstance(dtype, _TEXT_TYPES) or (dtype is None and stype in {"text", "multicategorical"})
    numeric = stype in {"numerical", "count"} or (dtype is not None and dtype.is_numeric())
    if dtype == pl.Boolean and literal.kind in {"string", "datetime"}:
        truthy = str(literal.value).strip().lower() in {pair[0] for pair in _PAIRS}
        replacement = nodes.Literal(truthy, "boolean", literal.position)
        raise binder.error(
            f"{_name(left)} is a boolean column, so it cannot be compared with the text {literal.value!r}: "
            f"compare with TRUE or FALSE; fix: `{fix(replacement)}`",
            literal.position,
        )
    if textual and literal.kind in {"number", "boolean"}:
        shown = str(literal.value).lower() if literal.kind == "boolean" else str(literal.value)
        replacement = nodes.Literal(shown, "string", literal.position)
        raise binder.error(
            f"{_name(left)} is {stype} (text values), so it cannot be compared with the {literal.kind} "
            f"{shown}: quote the value; fix: `{fix(replacement)}`",
            literal.position,
        )
    if numeric and literal.kind in {"string", "datetime"}:
        try:
            number = float(str(literal.value))
            replacement = nodes.Literal(
                int(number) if number.is_integer() else number, "number", literal.position
            )
            how = "write it as a number"
        except ValueError:
            replacement = nodes.Literal(0, "number", literal.position)
            how = "compare with a number (0 stands for yours)"
        kind = "a count" if stype == "count" else f"{stype or dtype}"
        raise binder.error(
            f"expected a number here, not {literal.value!r}: {_name(left)} is {kind}, so it cannot be compared "
            f"with text; {how}: `{fix(replacement)}`",
            literal.position,
        )
    return literal


def positive_class(series: pl.Series | None) -> object:
    """The class labelled 1 when ``series`` has two classes (None otherwise): True for a boolean column; for
    two values that read as yes/no (true/false, yes/no, y/n, 1/0, t/f, any case) the yes; else the greater."""
    if series is None:
        return None
    if series.dtype == pl.Boolean:
        return True
    values = series.drop_nulls().unique().to_list()
    if len(values) != 2:
        return None
    by_text = {str(value).strip().lower(): value for value in values}
    for yes, no in _PAIRS:
        if set(by_text) == {yes, no}:
            return by_text[yes]
    return max(values)
