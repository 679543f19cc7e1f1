"""Compiling a bound query to polars lazy plans over the validated tables: one training table.

Rows of a fact table are sorted by time at ingest, so the rows of a window (anchor+start, anchor+end]
are one contiguous slice found by binary search; each aggregation is the concatenation of its slices
grouped by (anchor, entity). No SQL strings, no eval: conditions become polars expressions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from kumo_assets.keys import NODE_ID
from kumo_assets.pql.ast import BoolOp, Column, Comparison, Condition, Literal, Membership, Not, NullCheck
from kumo_assets.pql.bound import BoundAggregation, BoundQuery
from kumo_assets.table_build import END_TIME, EVENT_TIME

__all__ = ["SPLITS", "CompiledTable", "compile_training_table"]

SPLITS = ("train", "val", "test")
_ENTITY_PREFIX = "_e_"
_OPERATORS: dict[str, Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


@dataclass
class CompiledTable:
    """The training table plus the provenance the leakage audit checks (not written with the table)."""

    table: pl.DataFrame  # entity, anchor_time, label, split
    provenance: pl.DataFrame  # anchor_time, split, entity time, per-aggregation min/max row times
    anchors: dict[str, list[int]]


def compile_training_table(
    bound: BoundQuery,
    tables: Mapping[str, pl.DataFrame],
    anchors: Mapping[str, list[int]],
    progress: Callable[[str], None] | None = None,
) -> CompiledTable:
    """Label every eligible entity at every anchor of every split.

    Args:
        tables: validated tables by name, as ingest writes them (node ids, times, foreign-key ids).
        anchors: anchor times (UTC seconds) per split, e.g. ``{"train": [...], "val": [...], "test": [...]}``.
    """
    report = progress or (lambda _: None)
    anchor_frame = _anchor_frame(anchors)
    if not bound.is_temporal:
        return _static_table(bound, tables, anchor_frame)
    candidates = _entity_candidates(bound, tables[bound.entity_table], anchor_frame)
    anchor_times = anchor_frame["anchor_time"].to_numpy()
    for aggregation in bound.aggregations.values():
        report(f"aggregating {aggregation.function}({aggregation.table}) over {len(anchor_times)} anchors")
        values = _aggregate(aggregation, tables, anchor_times, bound.entity_table)
        candidates = candidates.join(values, on=["_anchor", NODE_ID], how="left")
        fill = 0 if not aggregation.drops_empty else None
        if fill is not None:
            candidates = candidates.with_columns(pl.col(aggregation.key).fill_null(fill))
    if bound.where is not None:
        candidates = candidates.filter(_expression(bound.where).fill_null(False))
    if bound.assuming is not None:
        candidates = candidates.filter(_expression(bound.assuming).fill_null(False))
    for key, aggregation in bound.aggregations.items():
        if key.startswith("target") and aggregation.drops_empty:
            candidates = candidates.filter(pl.col(f"{key}__rows").fill_null(0) > 0)
    candidates = candidates.with_columns(_label_expression(bound).alias("label"))
    if bound.task_type != "binary_classification":
        candidates = candidates.filter(pl.col("label").is_not_null())  # e.g. AVG over rows that are all null
    report("collecting")
    frame = candidates.collect()
    return _finish(bound, frame, anchors)


def _anchor_frame(anchors: Mapping[str, list[int]]) -> pl.DataFrame:
    times, splits = [], []
    for split in SPLITS:
        values = sorted(anchors.get(split, []))
        times += values
        splits += [split] * len(values)
    return pl.DataFrame(
        {"_anchor": np.arange(len(times), dtype=np.int64), "anchor_time": times, "split": splits},
        schema={"_anchor": pl.Int64, "anchor_time": pl.Int64, "split": pl.String},
    )


def _entity_candidates(bound: BoundQuery, entity: pl.DataFrame, anchor_frame: pl.DataFrame) -> pl.LazyFrame:
    """Every (anchor, entity) pair where the entity exists at the anchor (and is among FOR ... IN)."""
    columns = [column for column in entity.columns if not column.startswith("_kumo_")]
    selected = entity.lazy().select(
        NODE_ID,
        *[pl.col(column).alias(_ENTITY_PREFIX + column) for column in columns],
        (pl.col(EVENT_TIME) if EVENT_TIME in entity.columns else pl.lit(None, pl.Int64)).alias(
            "_entity_time"
        ),
        (pl.col(END_TIME) if END_TIME in entity.columns else pl.lit(None, pl.Int64)).alias("_entity_end"),
    )
    if bound.entity_ids is not None:
        selected = selected.filter(pl.col(_ENTITY_PREFIX + bound.entity_column).is_in(list(bound.entity_ids)))
    pairs = anchor_frame.lazy().join(selected, how="cross")
    return pairs.filter(
        (pl.col("_entity_time").is_null() | (pl.col("_entity_time") <= pl.col("anchor_time")))
        & (pl.col("_entity_end").is_null() | (pl.col("_entity_end") > pl.col("anchor_time")))
    )


def _rows_to_entity(aggregation: BoundAggregation, tables: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """The aggregated table with a column ``_entity`` holding the entity node id of each row."""
    frame = tables[aggregation.table]
    first = aggregation.path[0]
    current = frame.with_columns(pl.col(first.id_column).alias("_entity"))
    for fk in aggregation.path[1:]:
        parent = tables[_parent_of(aggregation, fk, tables)]
        lookup = parent.select(pl.col(NODE_ID).alias("_entity"), pl.col(fk.id_column).alias("_next"))
        current = current.join(lookup, on="_entity", how="left", maintain_order="left")
        current = current.drop("_entity").rename({"_next": "_entity"})
    return current


def _parent_of(aggregation: BoundAggregation, fk, tables) -> str:
    """The table a path step starts from: the target table of the previous foreign key in the path."""
    index = aggregation.path.index(fk)
    return aggregation.path[index - 1].table


def _aggregate(
    aggregation: BoundAggregation,
    tables: Mapping[str, pl.DataFrame],
    anchor_times: np.ndarray,
    entity_table: str,
) -> pl.LazyFrame:
    """Per (anchor, entity): the aggregated value, the number of rows and their earliest/latest time."""
    rows = _rows_to_entity(aggregation, tables)
    times = rows.get_column(EVENT_TIME).to_numpy()
    window = aggregation.window
    slices = []
    for index, anchor in enumerate(anchor_times.tolist()):
        low, high = window.bounds(anchor)
        start = 0 if low is None else int(np.searchsorted(times, low, side="right"))
        stop = int(np.searchsorted(times, high, side="right"))
        if stop > start:
            slices.append(
                rows.lazy().slice(start, stop - start).with_columns(pl.lit(index, pl.Int64).alias("_anchor"))
            )
    key = aggregation.key
    schema = {"_anchor": pl.Int64, NODE_ID: pl.Int64}
    if not slices:
        empty = pl.DataFrame(schema=schema).lazy()
        return empty.with_columns(
            pl.lit(None).alias(key),
            pl.lit(None, pl.Int64).alias(f"{key}__rows"),
            pl.lit(None, pl.Int64).alias(f"{key}__min_time"),
            pl.lit(None, pl.Int64).alias(f"{key}__max_time"),
        )
    windowed = pl.concat(slices).filter(pl.col("_entity").is_not_null())
    if aggregation.where is not None:
        windowed = windowed.filter(_expression(aggregation.where, table_columns=True).fill_null(False))
    return (
        windowed.group_by(["_anchor", pl.col("_entity").alias(NODE_ID)])
        .agg(
            _aggregate_expression(aggregation).alias(key),
            pl.len().cast(pl.Int64).alias(f"{key}__rows"),
            pl.col(EVENT_TIME).min().alias(f"{key}__min_time"),
            pl.col(EVENT_TIME).max().alias(f"{key}__max_time"),
        )
        .with_columns(pl.col(NODE_ID).cast(pl.Int64))
    )


def _aggregate_expression(aggregation: BoundAggregation) -> pl.Expr:
    column = pl.col(aggregation.column) if aggregation.column else None
    function = aggregation.function
    if function == "COUNT":
        return pl.len().cast(pl.Int64) if column is None else column.count().cast(pl.Int64)
    if function == "COUNT_DISTINCT":
        return column.drop_nulls().n_unique().cast(pl.Int64)
    if function == "SUM":
        return column.sum()
    if function == "AVG":
        return column.mean()
    if function == "MIN":
        return column.min()
    if function == "MAX":
        return column.max()
    ordered = column.sort_by(EVENT_TIME, maintain_order=True).drop_nulls()
    if function == "FIRST":
        return ordered.first()
    if function == "LAST":
        return ordered.last()
    if function == "LIST_DISTINCT":
        return ordered.unique(maintain_order=True)
    raise ValueError(f"unknown aggregation {function}")


def _expression(node: Condition, table_columns: bool = False) -> pl.Expr:
    """A bound condition as a polars expression; ``table_columns`` inside an aggregation's WHERE."""
    if isinstance(node, BoundAggregation):
        return pl.col(node.key)
    if isinstance(node, Column):
        return pl.col(node.column if table_columns else _ENTITY_PREFIX + node.column)
    if isinstance(node, Literal):
        return pl.lit(node.value)
    if isinstance(node, Comparison):
        left = _expression(node.left, table_columns)
        if node.right.kind == "null" and node.operator in {"=", "!="}:
            return left.is_null() if node.operator == "=" else left.is_not_null()
        return _OPERATORS[node.operator](left, pl.lit(node.right.value))
    if isinstance(node, Membership):
        inside = _expression(node.value, table_columns).is_in([option.value for option in node.options])
        return ~inside.fill_null(False) if node.negated else inside
    if isinstance(node, NullCheck):
        value = _expression(node.value, table_columns)
        return value.is_not_null() if node.negated else value.is_null()
    if isinstance(node, BoolOp):
        items = [_expression(item, table_columns).fill_null(False) for item in node.items]
        return pl.all_horizontal(items) if node.operator == "AND" else pl.any_horizontal(items)
    if isinstance(node, Not):
        return ~_expression(node.item, table_columns).fill_null(False)
    raise TypeError(f"cannot compile {node!r}")


def _label_expression(bound: BoundQuery) -> pl.Expr:
    expression = _expression(bound.target)
    if bound.task_type == "binary_classification":
        return expression.fill_null(False).cast(pl.Int64)
    if bound.task_type in {"regression", "forecasting"}:
        return expression.cast(pl.Float64)
    return expression


def _static_table(
    bound: BoundQuery, tables: Mapping[str, pl.DataFrame], anchor_frame: pl.DataFrame
) -> CompiledTable:
    """A static column target: one row per entity whose value is known; split by time, else by hash."""
    entity = tables[bound.entity_table]
    column = bound.target.column
    has_time = EVENT_TIME in entity.columns
    frame = entity.filter(pl.col(column).is_not_null())
    if bound.entity_ids is not None:
        frame = frame.filter(pl.col(bound.entity_column).is_in(list(bound.entity_ids)))
    rank = (
        pl.col(EVENT_TIME).rank("ordinal")
        if has_time
        else pl.col(bound.entity_column).hash(7).rank("ordinal")
    )
    fraction = (rank - 1) / pl.len()
    split = (
        pl.when(fraction < 0.8)
        .then(pl.lit("train"))
        .when(fraction < 0.9)
        .then(pl.lit("val"))
        .otherwise(pl.lit("test"))
    )
    anchor = pl.col(EVENT_TIME) if has_time else pl.lit(None, pl.Int64)
    table = frame.select(
        pl.col(bound.entity_column).alias("entity"),
        anchor.alias("anchor_time"),
        pl.col(column).alias("label"),
        split.alias("split"),
    )
    provenance = table.select("anchor_time", "split", pl.col("anchor_time").alias("_entity_time"))
    return CompiledTable(table, provenance, {split: [] for split in SPLITS})


def _finish(bound: BoundQuery, frame: pl.DataFrame, anchors: Mapping[str, list[int]]) -> CompiledTable:
    order = pl.col("split").replace_strict({split: index for index, split in enumerate(SPLITS)})
    frame = frame.sort(order, "anchor_time", _ENTITY_PREFIX + bound.entity_column)
    table = frame.select(
        pl.col(_ENTITY_PREFIX + bound.entity_column).alias("entity"), "anchor_time", "label", "split"
    )
    provenance_columns = ["anchor_time", "split", "_entity_time"] + [
        f"{key}__{part}" for key in bound.aggregations for part in ("rows", "min_time", "max_time")
    ]
    return CompiledTable(
        table, frame.select(provenance_columns), {s: sorted(anchors.get(s, [])) for s in SPLITS}
    )
