"""The task type a bound target gives: binary (a condition, or a column with two classes), regression,
multiclass, multilabel, ranking, link prediction or forecasting."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Protocol

import polars as pl

from relational.pql import ast as nodes
from relational.pql.bound import BoundAggregation, ParentColumn
from relational.pql.errors import QueryError
from relational.pql.values import column_of, positive_class
from relational.schema import GraphSchema

__all__ = ["task_type"]

_FORECASTABLE = {"COUNT", "SUM", "AVG", "MIN", "MAX", "COUNT_DISTINCT"}


class _Binder(Protocol):
    schema: GraphSchema
    tables: Mapping[str, pl.DataFrame]
    query: nodes.Query

    def error(self, message: str, position: int) -> QueryError: ...

    def fix(self, query: nodes.Query) -> str: ...


def task_type(binder: _Binder, target: nodes.Condition) -> tuple[str, str | None, object]:
    """(task type, the ranked table for link prediction, the positive class of a two-class target)."""
    query = binder.query
    if isinstance(target, nodes.Column | ParentColumn):
        stype = binder.schema.tables[target.table].stypes[target.column]
        if query.forecast_timeframes:
            raise binder.error("FORECAST needs a numerical aggregation target", target.position)
        if stype == "numerical":
            return "regression", None, None
        if stype == "categorical":
            return _classes(binder, target)
        if stype == "multicategorical":
            return ("ranking" if query.rank_top_k else "multilabel_classification"), None, None
        raise binder.error(f"{target} is {stype}: it cannot be predicted", target.position)
    if isinstance(target, BoundAggregation):
        if query.forecast_timeframes:
            if target.function not in _FORECASTABLE:
                raise binder.error("FORECAST needs a numerical aggregation target", target.position)
            return "forecasting", None, None
        if target.function == "LIST_DISTINCT":
            return _list_distinct(binder, target)
        if target.function in {"FIRST", "LAST"} and target.column_stype == "categorical":
            return _classes(binder, target)
        if target.function in {"FIRST", "LAST"} and target.column_stype == "id":
            return "multiclass_classification", None, None
        if target.function in {"FIRST", "LAST"} and target.column_stype not in {"numerical", "timestamp"}:
            raise binder.error(f"{target.function} of a {target.column_stype} column cannot be predicted",
                               target.position)  # fmt: skip
        return "regression", None, None
    if query.forecast_timeframes:
        raise binder.error("FORECAST needs a numerical aggregation target, not a condition", 0)
    if query.rank_top_k or query.classify:
        raise binder.error("RANK TOP K and CLASSIFY need a LIST_DISTINCT or multicategorical target", 0)
    return "binary_classification", None, None


def _classes(binder: _Binder, target) -> tuple[str, str | None, object]:
    """Binary when the column is boolean or holds exactly two classes in the data, else multiclass."""
    positive = positive_class(column_of(binder.tables, target))
    if positive is None:
        return "multiclass_classification", None, None
    return "binary_classification", None, positive


def _list_distinct(binder: _Binder, target: BoundAggregation) -> tuple[str, str | None, object]:
    query = binder.query
    fk = next(
        (fk for fk in binder.schema.tables[target.table].foreign_keys if fk.columns == (target.column,)), None
    )
    if query.rank_top_k:
        if fk is None:
            raise binder.error(
                f"RANK TOP K ranks entities of another table: {target.table}.{target.column} must be a foreign "
                f"key; to predict the set of its values use CLASSIFY: "
                f"`{binder.fix(replace(query, rank_top_k=None, classify=True))}`",
                target.position,
            )
        return "link_prediction", fk.table, None
    if query.classify:
        return "multilabel_classification", None, None
    classify = (
        f"`{binder.fix(replace(query, classify=True))}` (CLASSIFY: multilabel, predicts the set of values)"
    )
    if fk is None:
        fixes = f"{target.table}.{target.column} is no foreign key, so write {classify}"
    else:
        ranked = binder.fix(replace(query, rank_top_k=10))
        fixes = f"write `{ranked}` (RANK TOP 10: ranks the {fk.table} most likely to appear) or {classify}"
    raise binder.error(f"LIST_DISTINCT as a target needs RANK TOP K or CLASSIFY: {fixes}", target.position)
