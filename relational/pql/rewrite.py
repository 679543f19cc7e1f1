"""Conditions on a linked table's rows written outside any aggregation, rewritten into aggregations before
binding, so the compiler and the audit only ever see aggregations:

- WHERE ``orders.status = 'done'`` (a top-level AND item on a time-stamped child table) filters the rows the
  target's aggregations over that table read: it moves inside each of them;
- ASSUMING ``orders.discount = 0.1`` means every row of that table in the target's window satisfies it:
  ``COUNT(orders.* WHERE NOT (orders.discount = 0.1), <target span>) = 0``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Protocol

from relational.pql import ast as nodes
from relational.pql.bound import BoundAggregation
from relational.pql.errors import QueryError
from relational.pql.routes import all_routes
from relational.pql.tree import aggregations_in, columns_in, conjuncts, replace_node, without
from relational.schema import GraphSchema, TableSchema

__all__ = ["push_where_rows", "rows_in_assuming", "table_role"]

_PREDICATES = (nodes.Comparison, nodes.Membership, nodes.NullCheck, nodes.Column)  # one column, alone
_UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}


class _Binder(Protocol):
    schema: GraphSchema
    entity_table: TableSchema

    def error(self, message: str, position: int) -> QueryError: ...

    def table(self, name: str, position: int) -> TableSchema: ...

    def fix(self, query: nodes.Query) -> str: ...


def table_role(binder: _Binder, name: str) -> str:
    """How ``name`` relates to the entity table: entity, parent (many-to-one), child (time-stamped rows
    that reach the entity by foreign keys), or unlinked."""
    entity = binder.entity_table.name
    if name == entity:
        return "entity"
    if all_routes(binder.schema, entity, name):
        return "parent"
    if binder.schema.tables[name].has_time and all_routes(binder.schema, name, entity):
        return "child"
    return "unlinked"


def _row_subtrees(binder: _Binder, node, role: str) -> list[tuple[str, nodes.Condition]]:
    """The largest sub-conditions that read only one table's columns, that table having ``role``."""
    columns = columns_in(node)
    names = {binder.table(column.table, column.position).name for column in columns}
    if len(names) == 1 and not aggregations_in(node) and table_role(binder, next(iter(names))) == role:
        return [(next(iter(names)), node)]
    children = (
        node.items if isinstance(node, nodes.BoolOp) else (node.item,) if isinstance(node, nodes.Not) else ()
    )
    return [found for child in children for found in _row_subtrees(binder, child, role)]


def _target_aggregations(node, table: str, binder: _Binder) -> list[nodes.Aggregation]:
    """The aggregations of ``node`` over ``table``."""
    return [
        aggregation
        for aggregation in aggregations_in(node)
        if binder.table(aggregation.target.table, aggregation.target.position).name == table
    ]


def _and(*items: nodes.Condition | None) -> nodes.Condition:
    kept = [item for item in items if item is not None]
    return kept[0] if len(kept) == 1 else nodes.BoolOp("AND", tuple(kept), kept[0].position)


def _move_into(query: nodes.Query, binder: _Binder, table: str, rows: list[nodes.Condition]) -> nodes.Query:
    """``rows`` taken out of WHERE and ANDed (without VIA) into every target aggregation over ``table``."""
    target = query.target
    moved = [_strip_via(row) for row in rows]
    for aggregation in _target_aggregations(query.target, table, binder):
        target = replace_node(
            target, aggregation, dataclasses.replace(aggregation, where=_and(aggregation.where, *moved))
        )
    where = without(query.where, rows) if query.where is not None else None
    return dataclasses.replace(query, target=target, where=where)


def _past_aggregation(query: nodes.Query, table: str, row: nodes.Condition) -> nodes.Comparison:
    """``COUNT(table.* WHERE row, -L, 0) > 0``: had such a row in a past window as long as the target's."""
    aggregations = aggregations_in(query.target)
    length, unit = 30.0, "days"
    if aggregations:
        length, unit = aggregations[0].end - max(aggregations[0].start, 0), aggregations[0].unit
    inner = nodes.Aggregation("COUNT", nodes.Column(table, "*"), -length, 0, unit, row)
    return nodes.Comparison(inner, ">", nodes.Literal(0, "number"))


def push_where_rows(binder: _Binder, query: nodes.Query) -> nodes.Query:
    """Move WHERE's top-level conditions on a child table's rows into the target's aggregations over it."""
    if query.where is None:
        return query
    temporal = bool(aggregations_in(query.target))
    for item in conjuncts(query.where):
        rows = _row_subtrees(binder, item, "child")
        if not rows:
            continue
        table, row = rows[0]
        column = columns_in(row)[0]
        plain = row is item and isinstance(item, _PREDICATES) and not column.via
        readers = _target_aggregations(query.target, table, binder)
        if plain and readers:
            query = _move_into(query, binder, table, [item])
            continue
        if not readers:
            if temporal:
                fixed = replace_node(query, row, _past_aggregation(query, table, row))
                how = f"to select entities by their past {table} rows, aggregate them: `{binder.fix(fixed)}`"
            else:
                fixed = dataclasses.replace(query, where=without(query.where, [row]))
                how = f"a static target has no window for them to filter; fix: `{binder.fix(fixed)}`"
            raise binder.error(
                f"{column} is a column of {table}'s rows, which WHERE can only use to filter the rows the "
                f"target's aggregations over {table} read, and no target aggregation reads {table}; {how}",
                column.position,
            )
        fixed = _move_into(query, binder, table, [row])
        place = (
            "inside OR"
            if isinstance(item, nodes.BoolOp)
            else "inside NOT"
            if isinstance(item, nodes.Not)
            else "with VIA"
        )
        raise binder.error(
            f"{column} is a column of {table}'s rows: in WHERE it may only stand alone in a top-level AND (it "
            f"then filters the rows the target's aggregations over {table} read), not {place}; write the row "
            f"condition inside the aggregation: `{binder.fix(fixed)}`",
            column.position,
        )
    return query


def rows_in_assuming(binder: _Binder, query: nodes.Query, targets: list[BoundAggregation]) -> nodes.Query:
    """Replace each ASSUMING condition on a child table's rows by ``COUNT(T.* WHERE NOT (cond), span) = 0``."""
    if query.assuming is None or not targets:
        return query
    for table, row in _row_subtrees(binder, query.assuming, "parent"):
        fixed = dataclasses.replace(
            query, assuming=without(query.assuming, [row]), where=_and(query.where, row)
        )
        column = columns_in(row)[0]
        raise binder.error(
            f"{column} is a column of {table}, which {binder.entity_table.name} links to many-to-one: it is "
            f"known at prediction time, so it belongs in WHERE, not ASSUMING; fix: `{binder.fix(fixed)}`",
            column.position,
        )
    assuming = query.assuming
    for table, row in _row_subtrees(binder, query.assuming, "child"):
        start, end, unit = _span(binder, targets, row.position)
        via = next((c.via for c in columns_in(row) if c.via), ())
        via = via or next((a.via for a in _target_aggregations(query.target, table, binder) if a.via), ())
        check = nodes.Aggregation(
            "COUNT",
            nodes.Column(table, "*", row.position, via),
            start,
            end,
            unit,
            nodes.Not(_strip_via(row), row.position),
            row.position,
        )
        assuming = replace_node(
            assuming, row, nodes.Comparison(check, "=", nodes.Literal(0, "number"), row.position)
        )
    return dataclasses.replace(query, assuming=assuming)


def _strip_via(row: nodes.Condition) -> nodes.Condition:
    for column in columns_in(row):
        if column.via:
            row = replace_node(row, column, dataclasses.replace(column, via=()))
    return row


def _span(binder: _Binder, targets: list[BoundAggregation], position: int) -> tuple[float, float, str]:
    """From the earliest start to the latest end of the target's windows (in seconds if units differ)."""
    units = {a.window.unit for a in targets}
    if len(units) == 1:
        return min(a.window.start for a in targets), max(a.window.end for a in targets), units.pop()
    if "months" in units:
        raise binder.error(
            "the target's windows mix months with other units, so ASSUMING has no single window for a "
            "condition on rows; write it as COUNT(table.* WHERE NOT (...), start, end, unit) = 0",
            position,
        )
    seconds = [(a.window.start * _UNIT_SECONDS[a.window.unit], a.window.end * _UNIT_SECONDS[a.window.unit])
               for a in targets]  # fmt: skip
    start = min(low for low, _ in seconds)
    return (0.0 if math.isinf(start) else start), max(high for _, high in seconds), "seconds"
