"""Window aggregates of one table's rows per (entity, as-of) query: vectorised, exact and leakage-safe.

Rows are sorted by (entity, time), so the rows a query may read (time <= as_of) are a contiguous slice
[start, end) of its entity's segment, and every window is a sub-slice ending at ``end``. Sums come from
prefix sums restarted at each entity, min/max from a sparse table, category shares and counts from integer
prefix sums: every value depends only on the rows at or before the query's as-of time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numba
import numpy as np

__all__ = ["DAY", "RowSource", "WindowSpec", "aggregate_source"]

DAY = 86_400
_INT64_MIN = np.iinfo(np.int64).min
NUMERIC_AGGREGATIONS = ("sum", "mean", "min", "max", "std")
_EVENT_WINDOW_AGGREGATIONS = {"mean", "min", "max"}  # over the last N events a sum or count says little


@dataclass
class RowSource:
    """The rows of one foreign-key path, ready to aggregate per entity.

    ``entity``: node id of the entity each row belongs to; ``time``: int64 seconds per row (None: a static
    table, every row always visible); ``numeric``: float64 columns, NaN = null; ``categories``: boolean
    indicator columns named like ``statusId=1``; ``frame_rows``: each row's position in its table.
    """

    name: str
    entity: np.ndarray
    time: np.ndarray | None
    numeric: dict[str, np.ndarray] = field(default_factory=dict)
    categories: dict[str, np.ndarray] = field(default_factory=dict)
    frame_rows: np.ndarray | None = None
    with_count: bool = True


@dataclass(frozen=True)
class WindowSpec:
    """Which aggregates to compute: time windows in days (None = all history), last-N-event windows."""

    windows_days: tuple[int | None, ...]
    last_events: tuple[int, ...]
    aggregations: tuple[str, ...]
    last_value: bool = True
    recency: bool = True


def aggregate_source(
    source: RowSource, q_entity: np.ndarray, q_as_of: np.ndarray, spec: WindowSpec
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Features per query (float64 arrays) and each query's latest visible row (a ``frame_rows`` value, -1)."""
    timed = source.time is not None
    if len(source.entity) == 0:
        source = _with_placeholder_row(source, q_entity)
    order = np.lexsort((source.time, source.entity)) if timed else np.argsort(source.entity, kind="stable")
    entity = source.entity[order].astype(np.int64)
    time = source.time[order].astype(np.int64) if timed else np.zeros(len(order), dtype=np.int64)
    q_time = q_as_of.astype(np.int64) if timed else np.zeros(len(q_entity), dtype=np.int64)
    start = _rows_before(entity, time, q_entity, np.full(len(q_entity), _INT64_MIN), inclusive=False)
    end = _rows_before(entity, time, q_entity, q_time, inclusive=True)

    windows: list[tuple[str, np.ndarray, bool]] = []  # (label, first row, is a time window)
    for days in spec.windows_days if timed else (None,):
        if days is None:
            windows.append(("all", start, True))
        else:
            bound = q_time - int(days) * DAY
            windows.append(
                (f"{days}d", np.maximum(start, _rows_before(entity, time, q_entity, bound, True)), True)
            )
    if timed:
        windows += [(f"last{n}", np.maximum(start, end - n), False) for n in spec.last_events]

    features: dict[str, np.ndarray] = {}
    columns = [source.numeric[c][order] for c in source.numeric]
    matrix = np.column_stack(columns) if columns else np.zeros((len(order), 0))
    numeric = _Numeric(entity, matrix, end - start)
    names = list(source.numeric)
    categories = [source.categories[c][order] for c in source.categories]
    category_sums = _prefix(np.column_stack(categories).astype(np.int64)) if categories else None
    for label, first, is_time_window in windows:
        count = end - first
        if source.with_count and is_time_window:
            features[f"{source.name}.count.{label}"] = count.astype(np.float64)
        aggregations = spec.aggregations
        if not is_time_window:
            aggregations = tuple(name for name in aggregations if name in _EVENT_WINDOW_AGGREGATIONS)
        for column, values in zip(names, numeric.window(first, end, start, aggregations), strict=True):
            for aggregation, value in values.items():
                features[f"{source.name}.{column}.{aggregation}.{label}"] = value
        if category_sums is not None:
            shares = (category_sums[end] - category_sums[first]) / np.maximum(count, 1)[:, None]
            shares[count == 0] = np.nan
            for index, column in enumerate(source.categories):
                features[f"{source.name}.{column}.share.{label}"] = shares[:, index]

    visible = end > start
    last = np.where(visible, end - 1, 0)
    if timed and spec.last_value and names:
        values = numeric.values[last]
        values[~visible] = np.nan
        for index, column in enumerate(names):
            features[f"{source.name}.{column}.last"] = values[:, index]
    if timed and spec.recency and source.with_count:
        first_time = time[np.minimum(start, len(time) - 1)]
        last_time = time[last]
        features[f"{source.name}.days_since_first"] = np.where(visible, (q_time - first_time) / DAY, np.nan)
        features[f"{source.name}.days_since_last"] = np.where(visible, (q_time - last_time) / DAY, np.nan)
    rows = source.frame_rows[order] if source.frame_rows is not None else order
    latest = np.where(visible, rows[last], -1).astype(np.int64)
    return features, latest


def _with_placeholder_row(source: RowSource, q_entity: np.ndarray) -> RowSource:
    """An empty source plus one row no query can see (an entity id below all), so shapes stay uniform."""
    entity = np.array([int(q_entity.min()) - 1 if len(q_entity) else -1], dtype=np.int64)
    return RowSource(
        source.name,
        entity,
        None if source.time is None else np.zeros(1, dtype=np.int64),
        {name: np.full(1, np.nan) for name in source.numeric},
        {name: np.zeros(1, dtype=bool) for name in source.categories},
        np.full(1, -1, dtype=np.int64),
        source.with_count,
    )


def _rows_before(
    sorted_entity: np.ndarray,
    sorted_time: np.ndarray,
    q_entity: np.ndarray,
    q_time: np.ndarray,
    inclusive: bool,
) -> np.ndarray:
    """Per query, how many sorted rows precede it: a smaller entity, or the same one and an earlier time
    (an equal time too when ``inclusive``). Binary searches over the rows, which are already sorted: each
    entity's times are shifted into a band of their own, so one ascending key orders every (entity, time);
    O(rows + queries log rows), where a merged sort of rows and queries cost O(rows log rows) per call."""
    n = len(sorted_entity)
    if n == 0:
        return np.zeros(len(q_entity), dtype=np.int64)
    q_entity, q_time = q_entity.astype(np.int64), q_time.astype(np.int64)
    low = np.searchsorted(sorted_entity, q_entity, side="left")
    high = np.searchsorted(sorted_entity, q_entity, side="right")
    first, last = int(sorted_time.min()), int(sorted_time.max())
    band = (
        last - first + 3
    )  # a row's time sits at 1 .. band - 2 of its entity's band; queries clip to 0 .. band - 1
    segment = np.r_[0, np.cumsum(sorted_entity[1:] != sorted_entity[:-1])]
    if band * (int(segment[-1]) + 2) >= 2**62:  # the shifted keys could overflow int64: merge-sort instead
        return _rows_before_merged(sorted_entity, sorted_time, q_entity, q_time, inclusive)
    keys = (sorted_time - first + 1) + segment * band
    clipped = np.clip(q_time, first - 1, last + 1) - first + 1
    q_keys = clipped + segment[np.minimum(low, n - 1)] * band
    found = np.searchsorted(keys, q_keys, side="right" if inclusive else "left")
    return np.where(high > low, np.clip(found, low, high), low).astype(np.int64)


def _rows_before_merged(sorted_entity: np.ndarray, sorted_time: np.ndarray, q_entity: np.ndarray,
                        q_time: np.ndarray, inclusive: bool) -> np.ndarray:  # fmt: skip
    """`_rows_before` by one merged sort of rows and queries: exact for any int64 ids and times."""
    n = len(sorted_entity)
    entity = np.concatenate([sorted_entity, q_entity.astype(np.int64)])
    time = np.concatenate([sorted_time, q_time.astype(np.int64)])
    is_query = np.zeros(len(entity), dtype=bool)
    is_query[n:] = True
    order = np.lexsort((is_query if inclusive else ~is_query, time, entity))
    query_in_order = is_query[order]
    rows_seen = np.cumsum(~query_in_order)
    result = np.empty(len(q_entity), dtype=np.int64)
    result[order[query_in_order] - n] = rows_seen[query_in_order]
    return result


def _prefix(values: np.ndarray) -> np.ndarray:
    """Inclusive prefix sums with a leading zero row: sum of rows [a, b) = P[b] - P[a]."""
    out = np.zeros((values.shape[0] + 1, *values.shape[1:]), dtype=values.dtype)
    np.cumsum(values, axis=0, out=out[1:])
    return out


class _Numeric:
    """Prefix sums restarted at each entity (so a sum reads only its entity's rows, in time order) and
    sparse tables for range min/max, over the numeric columns of rows sorted by (entity, time)."""

    def __init__(self, entity: np.ndarray, values: np.ndarray, visible_lengths: np.ndarray) -> None:
        self.values = values.reshape(len(entity), -1).astype(np.float64)
        self.width = self.values.shape[1]
        self.entity = entity
        present = ~np.isnan(self.values)
        filled = np.where(present, self.values, 0.0)
        segment_first = np.r_[0, np.flatnonzero(np.diff(entity)) + 1]
        first_of_row = np.repeat(segment_first, np.diff(np.r_[segment_first, len(entity)]))
        centred = np.where(present, self.values - filled[first_of_row], 0.0)  # only for the variance
        self.present = _prefix(present.astype(np.int64))
        self.sums = _segment_cumsum(entity, filled)
        self.centred_sums = _segment_cumsum(entity, centred)
        self.centred_squares = _segment_cumsum(entity, centred * centred)
        self.max_length = int(visible_lengths.max()) if len(visible_lengths) else 0
        self._tables: dict[str, np.ndarray] = {}

    def window(self, first: np.ndarray, end: np.ndarray, start: np.ndarray, aggregations) -> list[dict]:
        """Per column, {aggregation: values} over rows [first, end) (start: the entity's first row)."""
        if self.width == 0:
            return []
        count = end - first
        non_null = (self.present[end] - self.present[first]).astype(np.float64)
        last = np.maximum(end - 1, 0)
        before = np.maximum(first - 1, 0)
        has_before = (first > start)[:, None]
        result: dict[str, np.ndarray] = {}
        if {"sum", "mean"} & set(aggregations):
            total = _segment_range(self.sums, last, before, has_before)
            if "sum" in aggregations:
                result["sum"] = np.where(non_null > 0, total, np.where(count[:, None] == 0, 0.0, np.nan))
            if "mean" in aggregations:
                result["mean"] = _divide(total, non_null)
        if "std" in aggregations:
            mean = _divide(_segment_range(self.centred_sums, last, before, has_before), non_null)
            square = _divide(_segment_range(self.centred_squares, last, before, has_before), non_null)
            result["std"] = np.sqrt(np.maximum(square - mean * mean, 0.0))
        for name, reduce in (("min", np.fmin), ("max", np.fmax)):
            if name in aggregations:
                result[name] = self._extreme(name, reduce, first, end)
        return [{name: result[name][:, index] for name in aggregations} for index in range(self.width)]

    def _extreme(self, name: str, reduce: Callable, first: np.ndarray, end: np.ndarray) -> np.ndarray:
        if name not in self._tables:
            levels = [self.values]
            while (1 << len(levels)) <= self.max_length:
                previous, step = levels[-1], 1 << (len(levels) - 1)
                current = previous.copy()
                reduce(previous[:-step], previous[step:], out=current[:-step])
                levels.append(current)
            self._tables[name] = np.stack(levels)
        table = self._tables[name]
        length = end - first
        valid = length > 0
        level = np.floor(np.log2(np.maximum(length, 1))).astype(np.int64)
        low = np.where(valid, first, 0)
        high = np.where(valid, end - (1 << level), 0)
        result = reduce(table[level, low], table[level, high])
        result[~valid] = np.nan
        return result


def _segment_cumsum(entity: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Cumulative sums restarted at every entity: each depends only on earlier rows of the same entity.
    Rows come sorted by entity, so one sequential pass does it (a grouped polars window over a million
    entities took seconds)."""
    out = np.empty(values.shape, dtype=np.float64)
    _cumsum_by_segment(
        np.ascontiguousarray(entity, dtype=np.int64), np.ascontiguousarray(values, dtype=np.float64), out
    )
    return out


@numba.njit(cache=True)
def _cumsum_by_segment(entity: np.ndarray, values: np.ndarray, out: np.ndarray) -> None:
    rows, columns = values.shape
    for column in range(columns):
        total = 0.0
        for row in range(rows):
            if row > 0 and entity[row] != entity[row - 1]:
                total = 0.0
            total += values[row, column]
            out[row, column] = total


def _segment_range(
    sums: np.ndarray, last: np.ndarray, before: np.ndarray, has_before: np.ndarray
) -> np.ndarray:
    return sums[last] - np.where(has_before, sums[before], 0.0)


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)
