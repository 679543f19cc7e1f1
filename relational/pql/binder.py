"""Binding a parsed query to a graph: names matched (case-insensitively), rules checked, task type inferred.

Every refusal is a `QueryError` with a caret at the offending position that names the rule and, where
one exists, shows the fix as the whole rewritten query.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

import polars as pl

from relational.errors import suggest_name
from relational.pql import ast as nodes
from relational.pql.bound import BoundAggregation, BoundQuery, ParentColumn, Window
from relational.pql.errors import QueryError
from relational.pql.render import render_query
from relational.pql.rewrite import push_where_rows, rows_in_assuming
from relational.pql.routes import MAX_HOPS, all_routes, choose_route
from relational.pql.task_types import task_type
from relational.pql.tree import aggregations_in, columns_in, conjuncts, replace_node, without
from relational.pql.values import checked_literal
from relational.schema import GraphSchema, TableSchema

__all__ = ["bind_query"]

_NUMERIC_FUNCTIONS = {"SUM", "AVG", "MIN", "MAX"}


def bind_query(
    query: nodes.Query, schema: GraphSchema, tables: Mapping[str, pl.DataFrame] | None = None
) -> BoundQuery:
    """Match every name of ``query`` to ``schema`` and check the rules of each clause.

    With ``tables`` (the validated frames) constants are also checked against the columns' data types, and a
    target column with two classes becomes binary classification (its positive class read from the data).
    """
    return _Binder(query, schema, tables or {}).bind()


class _Binder:
    def __init__(self, query: nodes.Query, schema: GraphSchema, tables: Mapping[str, pl.DataFrame]) -> None:
        self.query = query  # the tree fixes are rendered from (after WHERE/ASSUMING rewriting)
        self.schema = schema
        self.tables = tables
        self.aggregations: dict[str, BoundAggregation] = {}
        self.parents: dict[str, ParentColumn] = {}

    def error(self, message: str, position: int) -> QueryError:
        return QueryError(message, self.query.text, position)

    def fix(self, query: nodes.Query) -> str:
        """A corrected query as text, for messages."""
        return render_query(query)

    def fixed(self, old, new) -> str:
        """The current query with node ``old`` replaced by ``new``, as text."""
        return render_query(replace_node(self.query, old, new))

    def table(self, name: str, position: int) -> TableSchema:
        return self.schema.tables[self.match(name, list(self.schema.tables), "table", position)]

    def match(self, name: str, choices: list[str], what: str, position: int) -> str:
        if name in choices:
            return name
        folded = [choice for choice in choices if choice.lower() == name.lower()]
        if len(folded) == 1:
            return folded[0]
        if len(folded) > 1:
            raise self.error(
                f"{what} {name!r} is ambiguous: it matches {folded} when case is ignored", position
            )
        raise self.error(f"unknown {what} {name!r}{suggest_name(name, choices)}", position)

    def column(self, column: nodes.Column, table: TableSchema) -> nodes.Column:
        name = self.match(column.column, list(table.stypes), f"column of {table.name}", column.position)
        return nodes.Column(table.name, name, column.position)

    def bind(self) -> BoundQuery:
        query = self.query
        entity_table = self.table(query.entity.table, query.entity.position)
        entity = self.column(query.entity, entity_table)
        if entity_table.primary_key != [entity.column]:
            raise self.error(
                f"FOR EACH needs the primary key of {entity_table.name} "
                f"({', '.join(entity_table.primary_key) or 'it has none'}), not {entity.column!r}",
                query.entity.position,
            )
        self.entity_table = entity_table
        self.query = query = push_where_rows(self, query)
        target = self.condition(query.target, "target")
        kind, target_table, positive = task_type(self, target)
        targets = [a for key, a in self.aggregations.items() if key.startswith("target")]
        if not targets:
            self.check_static(query, target)
        if kind == "forecasting":
            self.add_forecast_windows(target, query.forecast_timeframes)
            targets = [a for key, a in self.aggregations.items() if key.startswith("target")]
        where = self.condition(query.where, "where") if query.where is not None else None
        self.query = query = rows_in_assuming(self, query, targets)
        assuming = self.condition(query.assuming, "assuming") if query.assuming is not None else None
        entity_ids = None
        if query.entity_ids is not None:
            entity_ids = tuple(self.literal_for(entity, literal).value for literal in query.entity_ids)
        separator_owner = target if isinstance(target, nodes.Column | ParentColumn) else None
        return BoundQuery(
            text=query.text,
            task_type=kind,
            entity_table=entity_table.name,
            entity_column=entity.column,
            target=target,
            where=where,
            assuming=assuming,
            aggregations=dict(self.aggregations),
            entity_ids=entity_ids,
            classify=query.classify,
            rank_top_k=query.rank_top_k,
            forecast_timeframes=query.forecast_timeframes,
            target_table=target_table,
            label_separator=self.schema.tables[separator_owner.table].separators.get(separator_owner.column)
            if separator_owner is not None
            else None,
            parents=dict(self.parents),
            positive_class=positive,
        )

    def check_static(self, query: nodes.Query, target: nodes.Condition) -> None:
        """A static target is one column: no condition on top, no ASSUMING, no past windows in WHERE."""
        if query.assuming is not None:
            raise self.error(
                "ASSUMING needs a temporal target (an aggregation over a window); a static column has no "
                f"future to assume anything about: `{self.fix(replace(query, assuming=None))}`",
                getattr(query.assuming, "position", 0),
            )
        if not isinstance(target, nodes.Column | ParentColumn):
            column = next(iter(columns_in(query.target)), None)
            fix = f"; fix: `{self.fix(replace(query, target=column))}`" if column is not None else ""
            raise self.error(
                "a condition on static columns cannot be a target: predict the column itself (a column with "
                f"two classes is binary classification){fix}",
                getattr(query.target, "position", 0),
            )
        for item in conjuncts(query.where):
            aggregation = next(iter(aggregations_in(item)), None)
            if aggregation is not None:
                fixed = replace(query, where=without(query.where, [item]))
                raise self.error(
                    f"a static target ({target}) has no anchor time, so WHERE cannot aggregate over a window; "
                    f"filter with columns of {self.entity_table.name} or of tables it links to: `{self.fix(fixed)}`",
                    aggregation.position,
                )

    def add_forecast_windows(self, target: BoundAggregation, timeframes: int) -> None:
        """FORECAST N TIMEFRAMES: N consecutive copies of the target window, keyed target0..targetN-1."""
        window = target.window
        length = window.end - (0 if math.isinf(window.start) else window.start)
        for index in range(1, timeframes):
            shifted = Window(window.start + index * length, window.end + index * length, window.unit)
            self.aggregations[f"target{index}"] = replace(target, key=f"target{index}", window=shifted)

    # -- conditions ------------------------------------------------------------------------------
    def condition(
        self, node: nodes.Condition, role: str, table: TableSchema | None = None
    ) -> nodes.Condition:
        """Bind a condition; ``table`` is the aggregated table inside an aggregation's WHERE."""
        if isinstance(node, nodes.BoolOp):
            return replace(node, items=tuple(self.condition(item, role, table) for item in node.items))
        if isinstance(node, nodes.Not):
            return replace(node, item=self.condition(node.item, role, table))
        if isinstance(node, nodes.Comparison):
            left = self.value(node.left, role, table)
            return replace(node, left=left, right=self.literal_for(left, node.right))
        if isinstance(node, nodes.Membership):
            value = self.value(node.value, role, table)
            return replace(node, value=value, options=tuple(self.literal_for(value, o) for o in node.options))
        if isinstance(node, nodes.NullCheck):
            return replace(node, value=self.value(node.value, role, table))
        return self.value(node, role, table)

    def value(self, node, role: str, table: TableSchema | None):
        if isinstance(node, nodes.Aggregation):
            if table is not None:
                raise self.error("aggregations cannot be nested inside an aggregation's WHERE", node.position)
            return self.aggregation(node, role)
        if not isinstance(node, nodes.Column):
            return node
        owner = self.table(node.table, node.position)
        if table is not None or owner.name == self.entity_table.name:
            expected = table or self.entity_table
            if owner.name != expected.name:
                raise self.error(
                    f"inside this aggregation only columns of {expected.name} can be used, not "
                    f"{owner.name}.{node.column}",
                    node.position,
                )
            if node.via:
                raise self.error(
                    f"VIA picks the route to a linked table, and {owner.name} needs none here: it goes right after "
                    "an aggregated column, COUNT(flights.* VIA flights.origin, 0, 30, days)",
                    node.via[0].position,
                )
            bound = self.column(node, owner)
            if owner.stypes[bound.column] == "id" and role == "target" and table is None:
                raise self.error(f"{bound} is a key or identifier: it cannot be predicted", node.position)
            return bound
        return self.parent_column(node, owner, role)

    def parent_column(self, node: nodes.Column, owner: TableSchema, role: str) -> ParentColumn:
        """A column of a table the entity links to many-to-one: one value per entity, through its keys."""
        entity = self.entity_table.name
        missing = (
            f"outside aggregations only columns of {entity} and of the tables it links to many-to-one can be "
            f"used, not {owner.name}.{node.column}; "
        )
        if all_routes(self.schema, owner.name, entity) and owner.has_time:
            missing += f"aggregate {owner.name} instead, e.g. COUNT({owner.name}.*, -30, 0, days) > 0"
        else:
            missing += f"{owner.name} is not linked to {entity} by foreign keys (within {MAX_HOPS} hops)"
        route = choose_route(self, entity, owner.name, node.via, node.position,
                             lambda extra: self.fixed(node, replace(node, via=node.via + extra)), missing)  # fmt: skip
        bound = self.column(node, owner)
        if owner.stypes[bound.column] == "id" and role == "target":
            raise self.error(f"{bound} is a key or identifier: it cannot be predicted", node.position)
        parent = ParentColumn(owner.name, bound.column, route, node.position)
        self.parents[parent.key] = parent
        return parent

    def literal_for(self, left, literal: nodes.Literal) -> nodes.Literal:
        """Check a constant against what it is compared with (see `checked_literal`)."""
        return checked_literal(self, left, literal, lambda replacement: self.fixed(literal, replacement))

    # -- aggregations ----------------------------------------------------------------------------
    def aggregation(self, node: nodes.Aggregation, role: str) -> BoundAggregation:
        table = self.table(node.target.table, node.target.position)
        column = None if node.target.column == "*" else self.column(node.target, table).column
        stype = table.stypes.get(column) if column else None
        if column is None and node.function != "COUNT":
            raise self.error(
                f"{node.function} needs a column: {node.function}({table.name}.<column>, ...)", node.position
            )
        if node.function in _NUMERIC_FUNCTIONS and stype not in {"numerical", "timestamp"}:
            raise self.error(
                f"{node.function} needs a numerical column, but {table.name}.{column} is {stype}",
                node.target.position,
            )
        if not table.has_time:
            raise self.error(
                f"{table.name} has no time column, so it cannot be aggregated over a window; give it a "
                "`time_column` (or `time_from`) in graph.yaml",
                node.target.position,
            )
        if table.name == self.entity_table.name:
            raise self.error(
                f"aggregate a table linked to {table.name}, not {table.name} itself", node.target.position
            )
        window = Window(node.start, node.end, node.unit)
        if node.unit == "months" and (
            node.end != int(node.end) or (not math.isinf(node.start) and node.start != int(node.start))
        ):
            raise self.error("month windows need whole numbers of months", node.position)
        self.check_window(node, role, window)
        where = self.condition(node.where, role, table) if node.where is not None else None
        key = f"{role}{sum(k.startswith(role) for k in self.aggregations)}"
        missing = (
            f"{table.name} is not linked to {self.entity_table.name} by foreign keys (within {MAX_HOPS} hops), so "
            f"it cannot be aggregated per {self.entity_table.name}"
        )
        target = node.target
        path = choose_route(self, table.name, self.entity_table.name, target.via, target.position,
                            lambda extra: self.fixed(target, replace(target, via=target.via + extra)), missing)  # fmt: skip
        bound = BoundAggregation(
            key, node.function, table.name, column, stype, window, path, where, node.position
        )
        self.aggregations[key] = bound
        return bound

    def check_window(self, node: nodes.Aggregation, role: str, window: Window) -> None:
        """Targets look at the future only, WHERE at the past only, ASSUMING at the future only."""
        if role == "target" and window.end <= 0:
            raise self.error("a target window must end in the future (end > 0); past windows belong in WHERE",
                             node.position)  # fmt: skip
        if role == "target" and window.start < 0:
            started = replace(node, start=0)
            past = nodes.Aggregation("COUNT", replace(node.target, column="*"), node.start, 0, node.unit)
            selected = replace_node(self.query, node, started)
            where = nodes.BoolOp(
                "AND", (selected.where, nodes.Comparison(past, ">", nodes.Literal(0, "number")))
            )
            selected = replace(selected, where=where if selected.where is not None else where.items[1])
            raise self.error(
                f"a target window must start at the anchor or later (start >= 0), not {window.describe()}: the "
                "label would count rows the model sees as input; start it at 0 "
                f"(`{self.fixed(node, started)}`) and put the past in WHERE (e.g. `{self.fix(selected)}`)",
                node.position,
            )
        if role == "where" and window.end > 0:
            raise self.error(
                f"WHERE may only look at the past (end <= 0), but this window ends at +{window.end:g} {window.unit}; "
                "conditions on the future belong in ASSUMING",
                node.position,
            )
        if role == "assuming" and window.start < 0:
            raise self.error(
                "ASSUMING looks at the future: its window must start at 0 or later", node.position
            )
