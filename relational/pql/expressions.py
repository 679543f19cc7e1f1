"""Bound conditions as polars expressions (two-valued: a comparison with a missing value is false)."""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from relational.pql.ast import BoolOp, Column, Comparison, Condition, Literal, Membership, Not, NullCheck
from relational.pql.bound import BoundAggregation, ParentColumn

__all__ = ["ENTITY_PREFIX", "condition_expression"]

ENTITY_PREFIX = "_e_"  # entity-table columns in the candidate frame, kept apart from our own columns

_OPERATORS: dict[str, Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def condition_expression(node: Condition, table_columns: bool = False) -> pl.Expr:
    """A bound condition as a polars expression; ``table_columns`` inside an aggregation's WHERE."""
    if isinstance(node, BoundAggregation | ParentColumn):
        return pl.col(node.key)
    if isinstance(node, Column):
        return pl.col(node.column if table_columns else ENTITY_PREFIX + node.column)
    if isinstance(node, Literal):
        return pl.lit(node.value)
    if isinstance(node, Comparison):
        left = condition_expression(node.left, table_columns)
        if node.right.kind == "null" and node.operator in {"=", "!="}:
            return left.is_null() if node.operator == "=" else left.is_not_null()
        return _OPERATORS[node.operator](left, pl.lit(node.right.value))
    if isinstance(node, Membership):
        inside = condition_expression(node.value, table_columns).is_in(
            [option.value for option in node.options]
        )
        return ~inside.fill_null(False) if node.negated else inside
    if isinstance(node, NullCheck):
        value = condition_expression(node.value, table_columns)
        return value.is_not_null() if node.negated else value.is_null()
    if isinstance(node, BoolOp):
        items = [condition_expression(item, table_columns).fill_null(False) for item in node.items]
        return pl.all_horizontal(items) if node.operator == "AND" else pl.any_horizontal(items)
    if isinstance(node, Not):
        return ~condition_expression(node.item, table_columns).fill_null(False)
    raise TypeError(f"cannot compile {node!r}")
