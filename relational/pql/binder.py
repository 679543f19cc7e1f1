"""Binding a parsed query to a graph: names matched (case-insensitively), rules checked, task type inferred."""

from __future__ import annotations

import math
from dataclasses import replace

import polars as pl

from relational.errors import suggest_name
from relational.normalise import to_epoch_seconds
from relational.pql import ast as nodes
from relational.pql.bound import BoundAggregation, BoundQuery, Window
from relational.pql.errors import QueryError
from relational.schema import GraphSchema, TableSchema
from relational.spec import ForeignKey

__all__ = ["bind_query"]

_NUMERIC_FUNCTIONS = {"SUM", "AVG", "MIN", "MAX"}


def bind_query(query: nodes.Query, schema: GraphSchema) -> BoundQuery:
    """Match every name of ``query`` to ``schema`` and check the rules of each clause."""
    return _Binder(query, schema).bind()


class _Binder:
    def __init__(self, query: nodes.Query, schema: GraphSchema) -> None:
        self.query = query
        self.schema = schema
        self.aggregations: dict[str, BoundAggregation] = {}

    def error(self, message: str, position: int) -> QueryError:
        return QueryError(message, self.query.text, position)

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
        target = self.condition(query.target, "target")
        where = self.condition(query.where, "where") if query.where is not None else None
        assuming = self.condition(query.assuming, "assuming") if query.assuming is not None else None
        task_type, target_table = self.task_type(target)
        if (
            assuming is not None
            and not isinstance(target, BoundAggregation)
            and not self._has_target_aggregation()
        ):
            raise self.error(
                "ASSUMING needs a temporal target (an aggregation over a window)",
                getattr(query.assuming, "position", 0),
            )
        if task_type == "forecasting":
            self.add_forecast_windows(target, query.forecast_timeframes)
        entity_ids = None
        if query.entity_ids is not None:
            entity_ids = tuple(self.literal_for(entity, literal).value for literal in query.entity_ids)
        return BoundQuery(
            text=query.text,
            task_type=task_type,
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
            label_separator=self.schema.tables[target.table].separators.get(target.column)
            if isinstance(target, nodes.Column)
            else None,
        )

    def add_forecast_windows(self, target: BoundAggregation, timeframes: int) -> None:
        """FORECAST N TIMEFRAMES: N consecutive copies of the target window, keyed target0..targetN-1."""
        window = target.window
        length = window.end - (0 if math.isinf(window.start) else window.start)
        for index in range(1, timeframes):
            shifted = Window(window.start + index * length, window.end + index * length, window.unit)
            self.aggregations[f"target{index}"] = replace(target, key=f"target{index}", window=shifted)

    def _has_target_aggregation(self) -> bool:
        return any(key.startswith("target") for key in self.aggregations)

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
        if isinstance(node, nodes.Column):
            owner = self.table(node.table, node.position)
            expected = table or self.entity_table
            if owner.name != expected.name:
                where = "inside this aggregation" if table is not None else "outside aggregations"
                raise self.error(
                    f"{where} only columns of {expected.name} can be used, not {owner.name}.{node.column}; "
                    f"aggregate {owner.name} instead, e.g. COUNT({owner.name}.*, -30, 0, days) > 0",
                    node.position,
                )
            bound = self.column(node, owner)
            if owner.stypes[bound.column] == "id" and role == "target" and table is None:
                raise self.error(f"{bound} is a key or identifier: it cannot be predicted", node.position)
            return bound
        return node

    def literal_for(self, left, literal: nodes.Literal) -> nodes.Literal:
        """Check a constant against what it is compared with; dates become epoch seconds for time columns."""
        stype = self.stype_of(left)
        if literal.kind == "null":
            return literal
        if stype == "timestamp":
            if literal.kind in {"string", "datetime"}:
                parsed = to_epoch_seconds(pl.Series([literal.value])).seconds[0]
                if parsed is None:
                    raise self.error(f"{literal.value!r} is not a date or time (use 2024-01-31 or 2024-01-31 12:00:00)",
                                     literal.position)  # fmt: skip
                return nodes.Literal(int(parsed), "number", literal.position)
            if literal.kind != "number":
                raise self.error("compare a time column with a date such as '2024-01-31'", literal.position)
        elif stype in {"numerical", "count"} and literal.kind not in {"number", "boolean"}:
            raise self.error(f"expected a number here, not {literal.value!r}", literal.position)
        return literal

    def stype_of(self, node) -> str | None:
        if isinstance(node, BoundAggregation):
            if node.function in {"COUNT", "COUNT_DISTINCT"}:
                return "count"
            if node.function in _NUMERIC_FUNCTIONS:
                return node.column_stype if node.column_stype == "timestamp" else "numerical"
            return node.column_stype
        if isinstance(node, nodes.Column):
            return self.schema.tables[node.table].stypes[node.column]
        return None

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
        if role == "target" and window.end <= 0:
            raise self.error("a target window must end in the future (end > 0); past windows belong in WHERE",
                             node.position)  # fmt: skip
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
        where = self.condition(node.where, role, table) if node.where is not None else None
        key = f"{role}{sum(k.startswith(role) for k in self.aggregations)}"
        bound = BoundAggregation(
            key, node.function, table.name, column, stype, window, self.path(table, node.target.position), where,
            node.position,
        )  # fmt: skip
        self.aggregations[key] = bound
        return bound

    def path(self, table: TableSchema, position: int) -> tuple[ForeignKey, ...]:
        """The unique shortest chain of foreign keys from ``table`` up to the entity table."""
        frontier = [(table.name, ())]
        for _ in range(4):
            found = [path for name, path in frontier if name == self.entity_table.name]
            if len(found) > 1:
                routes = " or ".join("->".join(f"{fk.name}" for fk in path) for path in found)
                raise self.error(
                    f"{table.name} reaches {self.entity_table.name} through several foreign keys ({routes}); "
                    "the query cannot tell which one is meant",
                    position,
                )
            if found:
                return found[0]
            frontier = [
                (fk.table, (*path, fk))
                for name, path in frontier
                for fk in self.schema.tables[name].foreign_keys
                if fk.table != name
            ]
        raise self.error(
            f"{table.name} is not linked to {self.entity_table.name} by foreign keys (within 4 hops), so it "
            f"cannot be aggregated per {self.entity_table.name}",
            position,
        )

    # -- task type -------------------------------------------------------------------------------
    def task_type(self, target: nodes.Condition) -> tuple[str, str | None]:
        query = self.query
        if isinstance(target, nodes.Column):
            stype = self.schema.tables[target.table].stypes[target.column]
            if query.forecast_timeframes:
                raise self.error("FORECAST needs a numerical aggregation target", target.position)
            if stype == "numerical":
                return "regression", None
            if stype == "categorical":
                return "multiclass_classification", None
            if stype == "multicategorical":
                return ("ranking" if query.rank_top_k else "multilabel_classification"), None
            raise self.error(f"{target} is {stype}: it cannot be predicted", target.position)
        if isinstance(target, BoundAggregation):
            if query.forecast_timeframes:
                if target.function not in {"COUNT", "SUM", "AVG", "MIN", "MAX", "COUNT_DISTINCT"}:
                    raise self.error("FORECAST needs a numerical aggregation target", target.position)
                return "forecasting", None
            if target.function == "LIST_DISTINCT":
                if query.rank_top_k:
                    fk = next((fk for fk in self.schema.tables[target.table].foreign_keys
                               if fk.columns == (target.column,)), None)  # fmt: skip
                    if fk is None:
                        raise self.error(
                            f"RANK TOP K ranks entities of another table: {target.table}.{target.column} must be "
                            "a foreign key",
                            target.position,
                        )
                    return "link_prediction", fk.table
                if query.classify:
                    return "multilabel_classification", None
                raise self.error("LIST_DISTINCT as a target needs RANK TOP K or CLASSIFY", target.position)
            if target.function in {"FIRST", "LAST"} and target.column_stype in {"categorical", "id"}:
                return "multiclass_classification", None
            if target.function in {"FIRST", "LAST"} and target.column_stype not in {"numerical", "timestamp"}:
                raise self.error(f"{target.function} of a {target.column_stype} column cannot be predicted",
                                 target.position)  # fmt: skip
            return "regression", None
        if query.forecast_timeframes:
            raise self.error("FORECAST needs a numerical aggregation target, not a condition", 0)
        if query.rank_top_k or query.classify:
            raise self.error("RANK TOP K and CLASSIFY need a LIST_DISTINCT or multicategorical target", 0)
        return "binary_classification", None
