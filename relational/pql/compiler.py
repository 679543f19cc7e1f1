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

from relational.keys import NODE_ID
from relational.pql.bound import BoundQuery
from relational.pql.expressions import ENTITY_PREFIX, condition_expression
from relational.pql.joins import parent_values
from relational.pql.static import static_table
from relational.pql.windows import aggregate_windows
from relational.table_build import END_TIME, EVENT_TIME

__all__ = ["SPLITS", "CompiledTable", "compile_training_table", "select_entities"]

SPLITS = ("train", "val", "test")


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
        table, provenance = static_table(bound, tables)
        return CompiledTable(table, provenance, {split: [] for split in SPLITS})
    candidates = _selected_candidates(bound, tables, anchor_frame, bound.aggregations, report)
    if bound.assuming is not None:
        candidates = candidates.filter(condition_expression(bound.assuming).fill_null(False))
    for key, aggregation in bound.aggregations.items():
        if key.startswith("target") and aggregation.drops_empty:
            candidates = candidates.filter(pl.col(f"{key}__rows").fill_null(0) > 0)
    if bound.positive_class is not None:  # a two-class FIRST/LAST: an unknown class is no example
        candidates = candidates.filter(condition_expression(bound.target).is_not_null())
    candidates = candidates.with_columns(_label_expression(bound).alias("label"))
    if bound.task_type == "forecasting":
        candidates = candidates.filter(~pl.col("label").list.eval(pl.element().is_null()).list.any())
    elif bound.task_type != "binary_classification":
        candidates = candidates.filter(pl.col("label").is_not_null())  # e.g. AVG over rows that are all null
    report("collecting")
    frame = candidates.collect()
    return _finish(bound, frame, anchors)


def select_entities(
    bound: BoundQuery, tables: Mapping[str, pl.DataFrame], anchor_times: list[int]
) -> CompiledTable:
    """The (entity, anchor_time) rows the query's FOR EACH and WHERE select at each anchor: what predictions
    score. The same candidates and filters as `compile_training_table`, without the target or ASSUMING (both
    read the future, which a prediction does not know yet). The table has no label; split is ``predict``."""
    anchor_frame = _anchor_frame({"test": anchor_times}).with_columns(split=pl.lit("predict"))
    where_only = {key: value for key, value in bound.aggregations.items() if key.startswith("where")}
    frame = _selected_candidates(bound, tables, anchor_frame, where_only, lambda _: None).collect()
    frame = frame.sort("anchor_time", ENTITY_PREFIX + bound.entity_column)
    table = frame.select(pl.col(ENTITY_PREFIX + bound.entity_column).alias("entity"), "anchor_time")
    provenance = frame.select(["anchor_time", "split", "_entity_time"] + [
        f"{key}__{part}" for key in where_only for part in ("rows", "min_time", "max_time")]
        + [f"{key}__time" for key in bound.parents])  # fmt: skip
    return CompiledTable(table, provenance, {"predict": sorted(anchor_times)})


def _selected_candidates(
    bound: BoundQuery,
    tables: Mapping[str, pl.DataFrame],
    anchor_frame: pl.DataFrame,
    aggregations: Mapping,
    report: Callable[[str], None],
) -> pl.LazyFrame:
    """Entities existing at each anchor, with ``aggregations`` and parent columns joined and the entity-level
    WHERE applied. A parent row created after the anchor reads as missing (it was not known yet)."""
    candidates = _entity_candidates(bound, tables[bound.entity_table], anchor_frame)
    if bound.parents:
        values = parent_values(tables[bound.entity_table], tables, bound.parents.values())
        candidates = candidates.join(values.lazy(), on=NODE_ID, how="left")
        for key in bound.parents:
            time = pl.col(f"{key}__time")
            known = time.is_null() | (time <= pl.col("anchor_time"))
            candidates = candidates.with_columns(
                pl.when(known).then(pl.col(key)).alias(key), pl.when(known).then(time).alias(f"{key}__time")
            )
    anchor_times = anchor_frame["anchor_time"].to_numpy()
    for aggregation in aggregations.values():
        report(f"aggregating {aggregation.function}({aggregation.table}) over {len(anchor_times)} anchors")
        values = aggregate_windows(aggregation, tables, anchor_times)
        candidates = candidates.join(values, on=["_anchor", NODE_ID], how="left")
        if not aggregation.drops_empty:
            candidates = candidates.with_columns(pl.col(aggregation.key).fill_null(0))
    if bound.where is not None:
        candidates = candidates.filter(condition_expression(bound.where).fill_null(False))
    return candidates


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
        *[pl.col(column).alias(ENTITY_PREFIX + column) for column in columns],
        (pl.col(EVENT_TIME) if EVENT_TIME in entity.columns else pl.lit(None, pl.Int64)).alias(
            "_entity_time"
        ),
        (pl.col(END_TIME) if END_TIME in entity.columns else pl.lit(None, pl.Int64)).alias("_entity_end"),
    )
    if bound.entity_ids is not None:
        selected = selected.filter(pl.col(ENTITY_PREFIX + bound.entity_column).is_in(list(bound.entity_ids)))
    pairs = anchor_frame.lazy().join(selected, how="cross")
    return pairs.filter(
        (pl.col("_entity_time").is_null() | (pl.col("_entity_time") <= pl.col("anchor_time")))
        & (pl.col("_entity_end").is_null() | (pl.col("_entity_end") > pl.col("anchor_time")))
    )


def _label_expression(bound: BoundQuery) -> pl.Expr:
    if bound.task_type == "forecasting":
        keys = [key for key in bound.aggregations if key.startswith("target")]
        return pl.concat_list([pl.col(key).cast(pl.Float64) for key in keys])
    expression = condition_expression(bound.target)
    if bound.positive_class is not None:
        expression = expression == pl.lit(bound.positive_class)
    if bound.task_type == "binary_classification":
        return expression.fill_null(False).cast(pl.Int64)
    if bound.task_type in {"regression", "forecasting"}:
        return expression.cast(pl.Float64)
    return expression


def _finish(bound: BoundQuery, frame: pl.DataFrame, anchors: Mapping[str, list[int]]) -> CompiledTable:
    order = pl.col("split").replace_strict({split: index for index, split in enumerate(SPLITS)})
    frame = frame.sort(order, "anchor_time", ENTITY_PREFIX + bound.entity_column)
    table = frame.select(
        pl.col(ENTITY_PREFIX + bound.entity_column).alias("entity"), "anchor_time", "label", "split"
    )
    provenance_columns = (
        ["anchor_time", "split", "_entity_time"]
        + [f"{key}__{part}" for key in bound.aggregations for part in ("rows", "min_time", "max_time")]
        + [f"{key}__time" for key in bound.parents]
    )
    return CompiledTable(
        table, frame.select(provenance_columns), {s: sorted(anchors.get(s, [])) for s in SPLITS}
    )
