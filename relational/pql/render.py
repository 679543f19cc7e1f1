"""Parsed queries back to PQL text: error messages show their fix as a whole rewritten query.

`render_query(parse_query(text))` parses back to the same tree (names as the user spelled them); the
binder edits the tree (`relational.pql.tree`) and renders it to show the query it would accept.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from relational.pql.ast import (
    Aggregation,
    BoolOp,
    Column,
    Comparison,
    Condition,
    Literal,
    Membership,
    Not,
    NullCheck,
    Query,
)
from relational.pql.tokens import AGGREGATIONS, KEYWORDS

__all__ = ["render_condition", "render_query", "render_value"]

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PRECEDENCE = {"OR": 1, "AND": 2}


def render_query(query: Query) -> str:
    """The query as one line of PQL."""
    parts = ["PREDICT", render_condition(query.target)]
    if query.forecast_timeframes:
        parts.append(f"FORECAST {query.forecast_timeframes} TIMEFRAMES")
    if query.classify:
        parts.append("CLASSIFY")
    if query.rank_top_k:
        parts.append(f"RANK TOP {query.rank_top_k}")
    if query.entity_ids is None:
        parts.append(f"FOR EACH {_column(query.entity)}")
    elif len(query.entity_ids) == 1:
        parts.append(f"FOR {_column(query.entity)} = {_literal(query.entity_ids[0])}")
    else:
        parts.append(f"FOR {_column(query.entity)} IN ({', '.join(map(_literal, query.entity_ids))})")
    if query.where is not None:
        parts.append(f"WHERE {render_condition(query.where)}")
    if query.assuming is not None:
        parts.append(f"ASSUMING {render_condition(query.assuming)}")
    return " ".join(parts)


def render_condition(node: Condition, outer: int = 0, value: Callable[[object], str] | None = None) -> str:
    """A condition as PQL; parentheses only where AND/OR/NOT precedence needs them. ``value`` prints the
    operands (default `render_value`; a bound query passes one that knows its bound aggregations)."""
    value = value or render_value
    if isinstance(node, BoolOp):
        own = _PRECEDENCE[node.operator]
        text = f" {node.operator} ".join(render_condition(item, own + 1, value) for item in node.items)
        return f"({text})" if outer > own else text
    if isinstance(node, Not):
        text = f"NOT {render_condition(node.item, 3, value)}"
        return f"({text})" if outer > 3 else text
    if isinstance(node, Comparison):
        return f"{value(node.left)} {node.operator} {value(node.right)}"
    if isinstance(node, Membership):
        options = ", ".join(value(option) for option in node.options)
        return f"{value(node.value)} {'NOT IN' if node.negated else 'IN'} ({options})"
    if isinstance(node, NullCheck):
        return f"{value(node.value)} IS {'NOT ' if node.negated else ''}NULL"
    return value(node)


def render_value(node) -> str:
    """An operand as PQL: an aggregation, a column or a literal."""
    if isinstance(node, Aggregation):
        inner = _column(node.target)
        if node.where is not None:
            inner += f" WHERE {render_condition(node.where)}"
        return f"{node.function}({inner}, {_bound(node.start)}, {_bound(node.end)}, {node.unit})"
    if isinstance(node, Column):
        return _column(node)
    return _literal(node)


def _column(column: Column) -> str:
    name = column.column if column.column == "*" else _name(column.column)
    text = f"{_name(column.table)}.{name}" if column.table else _name(column.column)
    return text + "".join(f" VIA {_column(item)}" for item in column.via)


def _name(name: str) -> str:
    if _PLAIN.match(name) and name.upper() not in KEYWORDS and name.upper() not in AGGREGATIONS:
        return name
    return f"`{name}`"


def _bound(value: float) -> str:
    if math.isinf(value):
        return "-INF" if value < 0 else "INF"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _literal(literal: Literal) -> str:
    if literal.kind == "null":
        return "NULL"
    if literal.kind == "boolean":
        return "TRUE" if literal.value else "FALSE"
    if literal.kind == "datetime":
        return str(literal.value)
    if literal.kind == "string":
        return "'" + str(literal.value).replace("\\", "\\\\").replace("'", "''") + "'"
    value = literal.value
    return str(value) if isinstance(value, int) else repr(float(value))
