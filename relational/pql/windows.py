"""Window aggregations: per (anchor, entity) the value over (anchor+start, anchor+end] of one table.

Two strategies give the same result. Counts, and sums/averages of integer columns, use prefix sums over
rows sorted by (entity, time): each (anchor, entity) is two binary searches, exact in integers. Every
other aggregation takes, per anchor, the contiguous slice of rows in the window (rows are sorted by time
at ingest) and groups the concatenated slices. An aggregation's WHERE filters rows once, up front.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from relational.keys import NODE_ID
from relational.pql.bound import BoundAggregation
from relational.pql.expressions import condition_expression
from relational.pql.joins import follow_keys
from relational.table_build import EVENT_TIME

__all__ = ["aggregate_windows"]

_PREFIX_FUNCTIONS = {"COUNT", "SUM", "AVG"}
_KEY_LIMIT = 2**62


def aggregate_windows(
    aggregation: BoundAggregation, tables: Mapping[str, pl.DataFrame], anchor_times: np.ndarray
) -> pl.LazyFrame:
    """Columns: _anchor, _kumo_id (entity), <key>, <key>__rows, <key>__min_time, <key>__max_time."""
    rows = _rows_with_entity(aggregation, tables)
    if aggregation.where is not None:
        rows = rows.filter(condition_expression(aggregation.where, table_columns=True).fill_null(False))
    columns = ["_entity", EVENT_TIME, *([aggregation.column] if aggregation.column else [])]
    rows = rows.select(columns).filter(pl.col("_entity").is_not_null())
    bounds = [aggregation.window.bounds(int(anchor)) for anchor in anchor_times]
    if _prefix_sums_apply(aggregation, rows):
        result = _by_prefix_sums(aggregation, rows, bounds)
        if result is not None:
            return result
    return _by_slices(aggregation, rows, bounds)


def _rows_with_entity(aggregation: BoundAggregation, tables: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """The aggregated table with ``_entity``: the entity node id each row belongs to (via the FK path)."""
    return follow_keys(tables[aggregation.table], tables, aggregation.path, "_entity")


def _prefix_sums_apply(aggregation: BoundAggregation, rows: pl.DataFrame) -> bool:
    if aggregation.function not in _PREFIX_FUNCTIONS:
        return False
    if aggregation.function == "COUNT" or aggregation.column is None:
        return True
    return rows.schema[aggregation.column].is_integer()  # float prefix sums would lose precision


def _by_prefix_sums(
    aggregation: BoundAggregation, rows: pl.DataFrame, bounds: list[tuple[int | None, int]]
) -> pl.LazyFrame | None:
    ordered = rows.sort("_entity", EVENT_TIME, maintain_order=True)
    entities = ordered.get_column("_entity").to_numpy()
    times = ordered.get_column(EVENT_TIME).to_numpy()
    if len(times) == 0:
        return None
    highs = np.array([high for _, high in bounds], dtype=np.int64)
    lows = np.array(
        [(low if low is not None else np.iinfo(np.int64).min) for low, _ in bounds], dtype=np.int64
    )
    base = min(int(times.min()), int(highs.min())) - 1
    lows = np.maximum(lows, base)  # -INF: before every row
    span = max(int(times.max()), int(highs.max())) - base + 2
    unique, first = np.unique(entities, return_index=True)
    if len(unique) * span >= _KEY_LIMIT:
        return None  # composite keys would overflow: the slice strategy handles it
    rank = np.repeat(np.arange(len(unique), dtype=np.int64), np.diff(np.append(first, len(entities))))
    keys = rank * span + (times - base)
    offsets = np.arange(len(unique), dtype=np.int64)[:, None] * span
    low_positions = np.searchsorted(keys, (offsets + (lows - base)[None, :]).ravel(), side="right")
    high_positions = np.searchsorted(keys, (offsets + (highs - base)[None, :]).ravel(), side="right")
    counts = high_positions - low_positions
    present = counts > 0
    entity_index, anchor_index = np.divmod(np.nonzero(present)[0], len(bounds))
    low_positions, high_positions, counts = low_positions[present], high_positions[present], counts[present]
    value = _prefix_value(aggregation, ordered, low_positions, high_positions, counts)
    key = aggregation.key
    return pl.DataFrame(
        {
            "_anchor": anchor_index.astype(np.int64),
            NODE_ID: unique[entity_index].astype(np.int64),
            key: value,
            f"{key}__rows": counts.astype(np.int64),
            f"{key}__min_time": times[low_positions],
            f"{key}__max_time": times[high_positions - 1],
        }
    ).lazy()


def _prefix_value(aggregation, ordered: pl.DataFrame, low: np.ndarray, high: np.ndarray, counts: np.ndarray):
    if aggregation.column is None:
        return counts.astype(np.int64)
    column = ordered.get_column(aggregation.column)
    present = np.concatenate([[0], np.cumsum(column.is_not_null().to_numpy(), dtype=np.int64)])
    non_null = present[high] - present[low]
    if aggregation.function == "COUNT":
        return non_null
    sums = np.concatenate([[0], np.cumsum(column.fill_null(0).cast(pl.Int64).to_numpy(), dtype=np.int64)])
    total = sums[high] - sums[low]
    if aggregation.function == "SUM":
        return total
    return pl.Series(np.where(non_null > 0, total / np.maximum(non_null, 1), np.nan)).fill_nan(None)


def _by_slices(
    aggregation: BoundAggregation, rows: pl.DataFrame, bounds: list[tuple[int | None, int]]
) -> pl.LazyFrame:
    times = rows.get_column(EVENT_TIME).to_numpy()
    slices = []
    for index, (low, high) in enumerate(bounds):
        start = 0 if low is None else int(np.searchsorted(times, low, side="right"))
        stop = int(np.searchsorted(times, high, side="right"))
        if stop > start:
            slices.append(
                rows.lazy().slice(start, stop - start).with_columns(pl.lit(index, pl.Int64).alias("_anchor"))
            )
    key = aggregation.key
    if not slices:
        return (
            pl.DataFrame(schema={"_anchor": pl.Int64, NODE_ID: pl.Int64})
            .lazy()
            .with_columns(
                pl.lit(None).alias(key),
                pl.lit(None, pl.Int64).alias(f"{key}__rows"),
                pl.lit(None, pl.Int64).alias(f"{key}__min_time"),
                pl.lit(None, pl.Int64).alias(f"{key}__max_time"),
            )
        )
    return (
        pl.concat(slices)
        .group_by(["_anchor", pl.col("_entity").cast(pl.Int64).alias(NODE_ID)])
        .agg(
            _slice_expression(aggregation).alias(key),
            pl.len().cast(pl.Int64).alias(f"{key}__rows"),
            pl.col(EVENT_TIME).min().alias(f"{key}__min_time"),
            pl.col(EVENT_TIME).max().alias(f"{key}__max_time"),
        )
    )


def _slice_expression(aggregation: BoundAggregation) -> pl.Expr:
    column = pl.col(aggregation.column) if aggregation.column else None
    function = aggregation.function
    if function == "COUNT":
        return pl.len().cast(pl.Int64) if column is None else column.count().cast(pl.Int64)
    simple = {
        "COUNT_DISTINCT": lambda: column.drop_nulls().n_unique().cast(pl.Int64),
        "SUM": lambda: column.sum(),
        "AVG": lambda: column.mean(),
        "MIN": lambda: column.min(),
        "MAX": lambda: column.max(),
    }
    if function in simple:
        return simple[function]()
    ordered = column.sort_by(EVENT_TIME, maintain_order=True).drop_nulls()
    if function == "FIRST":
        return ordered.first()
    if function == "LAST":
        return ordered.last()
    if function == "LIST_DISTINCT":
        return ordered.unique(maintain_order=True)
    raise ValueError(f"unknown aggregation {function}")
