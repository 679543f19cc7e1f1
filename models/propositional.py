"""Leakage-safe propositionalisation: one row of numeric features per (entity, anchor) from the whole graph.

The feature-engineering baseline (models/gbdt.py) reads these: the entity's own and parent columns, and
aggregates of child tables over several past windows along foreign-key paths (up to two hops), computed
only from rows at or before each row's as-of time. `audit_feature_leakage` proves that by perturbation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from kumo_assets.keys import NODE_ID
from kumo_assets.pql.errors import LeakageError
from kumo_assets.pql.schema import GraphSchema
from kumo_assets.spec import ForeignKey
from kumo_assets.table_build import EVENT_TIME
from models.propositional_windows import DAY, RowSource, WindowSpec, aggregate_source

__all__ = [
    "ROW_CUTOFF",
    "PropositionalConfig",
    "as_of_times",
    "audit_feature_leakage",
    "build_relational_features",
]

ROW_CUTOFF = "data_cutoff"  # optional column of ``entities``: a per-row end of the database (seconds)


@dataclass(frozen=True)
class PropositionalConfig:
    """What to compute. Defaults suit event tables spanning years (e.g. RelBench rel-f1).

    windows_days: past windows (as_of - days, as_of]; None = all history.
    last_events: windows of the last N visible events (mean/min/max of numeric columns, category shares).
    max_hops: 1 = own columns, parents, child aggregates; 2 adds grandchildren, parents of parents, child
        rows enriched with their other parents' columns, and (via_last_parent) the aggregates of the
        static parent of the entity's latest child row (e.g. a driver's current constructor's form).
    aggregations: of numeric child columns per time window, from sum, mean, min, max, std.
    top_categories: most frequent values of each categorical child column whose share is computed.
    calendar_features: the anchor's day of the year (seasonality; the anchor is known at prediction time).
    """

    windows_days: tuple[int | None, ...] = (30, 90, 365, 1825, None)
    last_events: tuple[int, ...] = (3, 10)
    max_hops: int = 2
    aggregations: tuple[str, ...] = ("sum", "mean", "min", "max", "std")
    last_value: bool = True
    recency: bool = True
    top_categories: int = 8
    enrich_children_with_parents: bool = True
    via_last_parent: bool = True
    calendar_features: bool = True

    def window_spec(self) -> WindowSpec:
        return WindowSpec(
            self.windows_days, self.last_events, self.aggregations, self.last_value, self.recency
        )


def build_relational_features(
    tables: Mapping[str, pl.DataFrame],
    schema: GraphSchema,
    entity_table: str,
    entities: pl.DataFrame,
    config: PropositionalConfig = PropositionalConfig(),
    data_cutoff: int | None = None,
) -> pl.DataFrame:
    """Numeric features for each row of ``entities`` (columns ``_kumo_id``, ``anchor_time``), same order.

    A time-stamped row is visible to a row iff its ``_kumo_time`` <= as_of, with as_of = anchor_time, or
    min(anchor_time, data_cutoff) when the database is frozen at ``data_cutoff`` (then the feature
    ``anchor_gap_days`` says how stale the view is). Windows are measured back from as_of. Data-derived
    choices (rated categories, category codes) read only rows visible to the latest as_of in ``entities``:
    build every split in one call so that they share columns.
    """
    missing = {NODE_ID, "anchor_time"} - set(entities.columns)
    if missing:
        raise ValueError(
            f"entities needs columns {sorted(missing)} (entity node id and anchor time, seconds)"
        )
    if entity_table not in schema.tables:
        raise ValueError(f"unknown entity table {entity_table!r}; tables: {sorted(schema.tables)}")
    anchor = entities.get_column("anchor_time").cast(pl.Int64).to_numpy()
    as_of = as_of_times(entities, data_cutoff).to_numpy()
    frozen = data_cutoff is not None or ROW_CUTOFF in entities.columns
    rows = pl.DataFrame({"_entity": entities.get_column(NODE_ID).cast(pl.Int64), "_as_of": as_of})
    queries = rows.unique(maintain_order=True).with_row_index("_query")
    query_of_row = rows.join(queries, on=["_entity", "_as_of"], how="left", maintain_order="left")
    q_entity = queries.get_column("_entity").to_numpy()
    q_as_of = queries.get_column("_as_of").to_numpy()
    limit = int(as_of.max()) if len(as_of) else 0
    graph = _Graph(tables, schema, config, limit)

    features: dict[str, np.ndarray] = {}
    positions = graph.positions(entity_table, q_entity)
    features.update(graph.static_features(entity_table, positions, q_as_of, config.max_hops, entity_table))
    features.update(graph.aggregate_features(entity_table, q_entity, q_as_of, config.max_hops))
    index = query_of_row.get_column("_query").to_numpy()
    columns: dict[str, np.ndarray] = {}
    if config.calendar_features:
        day = pl.from_epoch(pl.Series(anchor, dtype=pl.Int64), time_unit="s").dt.ordinal_day()
        columns["anchor_day_of_year"] = day.cast(pl.Float32).to_numpy()
    if frozen:
        columns["anchor_gap_days"] = ((anchor - as_of) / DAY).astype(np.float32)
    columns.update({name: values[index].astype(np.float32) for name, values in features.items()})
    return pl.DataFrame({name: pl.Series(name, values, dtype=pl.Float32) for name, values in columns.items()})


def as_of_times(entities: pl.DataFrame, data_cutoff: int | None = None) -> pl.Series:
    """Each row's as-of time: its anchor, capped by ``data_cutoff`` and by a per-row ``data_cutoff`` column."""
    as_of = entities.get_column("anchor_time").cast(pl.Int64)
    if data_cutoff is not None:
        as_of = as_of.clip(upper_bound=int(data_cutoff))
    if ROW_CUTOFF in entities.columns:
        row_cutoff = entities.get_column(ROW_CUTOFF).cast(pl.Int64)
        as_of = pl.select(pl.min_horizontal(as_of, row_cutoff.fill_null(as_of))).to_series()
    return as_of.alias("as_of")


class _Graph:
    """The tables cut at the latest as-of time, with lookups by node id and the feature builders."""

    def __init__(
        self, tables: Mapping[str, pl.DataFrame], schema: GraphSchema, config: PropositionalConfig, limit: int
    ) -> None:
        self.schema, self.config, self.spec = schema, config, config.window_spec()
        self.frames = {
            name: frame.filter(pl.col(EVENT_TIME) <= limit) if EVENT_TIME in frame.columns else frame
            for name, frame in ((name, tables[name]) for name in schema.tables)
        }
        self._lookups: dict[str, np.ndarray] = {}
        self._encodings: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}

    # ---- lookups ----------------------------------------------------------------------------------
    def times(self, table: str) -> np.ndarray | None:
        frame = self.frames[table]
        return frame.get_column(EVENT_TIME).to_numpy() if EVENT_TIME in frame.columns else None

    def positions(self, table: str, ids: np.ndarray) -> np.ndarray:
        """Row positions of node ids in the (cut) table; -1 for null, unknown or cut-off ids."""
        if table not in self._lookups:
            node_ids = self.frames[table].get_column(NODE_ID).to_numpy()
            lookup = np.full(int(node_ids.max()) + 2 if len(node_ids) else 1, -1, dtype=np.int64)
            lookup[node_ids] = np.arange(len(node_ids))
            self._lookups[table] = lookup
        lookup = self._lookups[table]
        safe = (ids >= 0) & (ids < len(lookup))
        return np.where(safe, lookup[np.where(safe, ids, 0)], -1)

    def fk_ids(self, table: str, fk: ForeignKey) -> np.ndarray:
        return self.frames[table].get_column(fk.id_column).fill_null(-1).cast(pl.Int64).to_numpy()

    def columns(self, table: str, stype: str) -> list[str]:
        frame = self.frames[table]
        return [
            column
            for column, kind in self.schema.tables[table].stypes.items()
            if kind == stype and column in frame.columns and not column.startswith("_kumo")
        ]

    def numeric(self, table: str, column: str) -> np.ndarray:
        series = self.frames[table].get_column(column).cast(pl.Float64, strict=False)
        return series.fill_nan(None).fill_null(np.nan).to_numpy()

    def children(self, table: str) -> list[tuple[str, ForeignKey, str]]:
        """(child, foreign key, label) for every foreign key pointing at ``table``."""
        found = []
        for child, child_schema in self.schema.tables.items():
            keys = [fk for fk in child_schema.foreign_keys if fk.table == table]
            found += [(child, fk, child if len(keys) == 1 else f"{child}.by_{fk.name}") for fk in keys]
        return found

    # ---- static columns (own and parents) -------------------------------------------------------
    def static_features(
        self, table: str, positions: np.ndarray, as_of: np.ndarray, hops: int, prefix: str
    ) -> dict[str, np.ndarray]:
        """The row's own columns and, hop by hop, its parents'; rows later than as_of read as null."""
        times = self.times(table)
        visible = positions >= 0
        if times is not None:
            row_time = np.where(visible, times[np.maximum(positions, 0)], 0)
            visible &= row_time <= as_of
            features = {f"{prefix}.days_since_row": np.where(visible, (as_of - row_time) / DAY, np.nan)}
        else:
            features = {}
        rows = np.maximum(positions, 0)
        for column in self.columns(table, "numerical"):
            features[f"{prefix}.{column}"] = np.where(visible, self.numeric(table, column)[rows], np.nan)
        for column in self.columns(table, "categorical"):
            codes, frequencies = self._encoding(table, column)
            features[f"{prefix}.{column}.code"] = np.where(visible, codes[rows], np.nan)
            features[f"{prefix}.{column}.freq"] = np.where(visible, frequencies[rows], np.nan)
        for column in self.columns(table, "timestamp"):
            stamp = self.numeric(table, column)[rows]
            days = (as_of - stamp) / DAY
            features[f"{prefix}.{column}.days_before"] = np.where(visible & (stamp <= as_of), days, np.nan)
        if hops >= 1:
            for fk in self.schema.tables[table].foreign_keys:
                parent_ids = np.where(visible, self.fk_ids(table, fk)[rows], -1)
                parent_positions = self.positions(fk.table, parent_ids)
                features.update(
                    self.static_features(
                        fk.table, parent_positions, as_of, hops - 1, f"{prefix}.{fk.name}->{fk.table}"
                    )
                )
        return features

    def _encoding(self, table: str, column: str) -> tuple[np.ndarray, np.ndarray]:
        """Per row: the value's rank among the sorted distinct values, and its share of the rows."""
        if (table, column) not in self._encodings:
            series = self.frames[table].get_column(column).cast(pl.String)
            frame = pl.DataFrame({"value": series})
            encoded = frame.with_columns(
                pl.col("value").rank("dense").cast(pl.Float64).alias("code"),
                (pl.len().over("value") / pl.len()).cast(pl.Float64).alias("freq"),
            )
            encoded = encoded.with_columns(
                pl.when(pl.col("value").is_null()).then(None).otherwise(pl.col(c)).alias(c)
                for c in ("code", "freq")
            )
            self._encodings[(table, column)] = tuple(
                encoded.get_column(c).fill_null(np.nan).to_numpy() for c in ("code", "freq")
            )
        return self._encodings[(table, column)]

    # ---- child aggregates -----------------------------------------------------------------------
    def aggregate_features(
        self, table: str, q_entity: np.ndarray, q_as_of: np.ndarray, hops: int
    ) -> dict[str, np.ndarray]:
        """Windowed aggregates of every child table; at two hops also grandchildren, enriched children and
        the latest child's static parents' own aggregates."""
        features: dict[str, np.ndarray] = {}
        via: dict[str, tuple[int, str, ForeignKey, str, np.ndarray]] = {}
        for child, fk, label in self.children(table):
            entity_ids = self.fk_ids(child, fk)
            source = self._source(child, label, entity_ids, self.times(child), np.arange(len(entity_ids)))
            child_features, latest = aggregate_source(source, q_entity, q_as_of, self.spec)
            features.update(child_features)
            if hops < 2:
                continue
            for other in self.schema.tables[child].foreign_keys:
                if other == fk:
                    continue
                if self.config.enrich_children_with_parents:
                    features.update(self._enriched(child, label, entity_ids, other, q_entity, q_as_of))
                static_parent = self.times(other.table) is None and other.table != table
                rows = len(entity_ids)
                if self.config.via_last_parent and static_parent and rows > via.get(other.table, (-1,))[0]:
                    via[other.table] = (rows, child, other, label, latest)
            for grandchild, grand_fk, grand_label in self.children(child):
                features.update(
                    self._grandchild(
                        child, label, entity_ids, grandchild, grand_fk, grand_label, q_entity, q_as_of
                    )
                )
        for _, child, other, label, latest in via.values():
            features.update(self._via_latest_parent(child, other, label, latest, q_as_of))
        return features

    def _source(
        self,
        table: str,
        name: str,
        entity_ids: np.ndarray,
        times: np.ndarray | None,
        frame_rows: np.ndarray,
        columns_of: str | None = None,
        with_count: bool = True,
    ) -> RowSource:
        """Rows of ``columns_of`` (default ``table``) at ``frame_rows``, keyed by entity, nulls dropped."""
        columns_of = columns_of or table
        keep = (entity_ids >= 0) & (frame_rows >= 0)
        rows = frame_rows[keep]
        numeric = {c: self.numeric(columns_of, c)[rows] for c in self.columns(columns_of, "numerical")}
        categories: dict[str, np.ndarray] = {}
        for column in self.columns(columns_of, "categorical"):
            values = self.frames[columns_of].get_column(column).gather(rows)
            for value in _top_values(values, self.config.top_categories):
                categories[f"{column}={value}"] = (values == value).fill_null(False).to_numpy()
        return RowSource(
            name,
            entity_ids[keep],
            None if times is None else times[keep],
            numeric,
            categories,
            np.flatnonzero(keep),
            with_count,
        )

    def _enriched(
        self, child: str, label: str, entity_ids: np.ndarray, other: ForeignKey, q_entity, q_as_of
    ) -> dict[str, np.ndarray]:
        """Child rows carrying their other parent's columns, visible once both rows are."""
        parent = other.table
        if not (self.columns(parent, "numerical") or self.columns(parent, "categorical")):
            return {}
        parent_rows = self.positions(parent, self.fk_ids(child, other))
        times = _latest_time(self.times(child), _gather_time(self.times(parent), parent_rows))
        keep = parent_rows >= 0
        source = self._source(
            child, f"{label}.{other.name}->{parent}", np.where(keep, entity_ids, -1), times, parent_rows,
            columns_of=parent, with_count=False,
        )  # fmt: skip
        return aggregate_source(source, q_entity, q_as_of, self.spec)[0]

    def _grandchild(
        self, child, label, entity_ids, grandchild, grand_fk, grand_label, q_entity, q_as_of
    ) -> dict[str, np.ndarray]:
        """Rows of a child's child, keyed by the entity through the child; visible once both rows are."""
        child_rows = self.positions(child, self.fk_ids(grandchild, grand_fk))
        entity = np.where(child_rows >= 0, entity_ids[np.maximum(child_rows, 0)], -1)
        times = _latest_time(self.times(grandchild), _gather_time(self.times(child), child_rows))
        rows = np.arange(len(entity))
        source = self._source(grandchild, f"{label}>{grand_label}", entity, times, rows)
        return aggregate_source(source, q_entity, q_as_of, self.spec)[0]

    def _via_latest_parent(
        self, child: str, other: ForeignKey, label: str, latest: np.ndarray, q_as_of: np.ndarray
    ) -> dict[str, np.ndarray]:
        """The one-hop features of the static parent of each query's latest child row, at the same as_of."""
        parent_ids = np.where(latest >= 0, self.fk_ids(child, other)[np.maximum(latest, 0)], -1)
        known = parent_ids >= 0
        sub = pl.DataFrame({"_entity": parent_ids, "_as_of": q_as_of})
        unique = sub.filter(known).unique(maintain_order=True).with_row_index("_query")
        index = sub.join(unique, on=["_entity", "_as_of"], how="left", maintain_order="left")
        index = index.get_column("_query").fill_null(0).to_numpy()
        p_entity = unique.get_column("_entity").to_numpy()
        p_as_of = unique.get_column("_as_of").to_numpy()
        prefix = f"{label}.{other.name}@last"
        parent_positions = self.positions(other.table, p_entity)
        inner = self.static_features(other.table, parent_positions, p_as_of, 0, other.table)
        inner.update(self.aggregate_features(other.table, p_entity, p_as_of, 1))
        return {
            f"{prefix}.{name}": np.where(known, values[index] if len(values) else np.nan, np.nan)
            for name, values in inner.items()
        }


def _top_values(values: pl.Series, limit: int) -> list:
    """The ``limit`` most frequent non-null values, ties broken by value, for stable columns."""
    if limit <= 0 or values.len() == 0:
        return []
    counts = values.drop_nulls().value_counts(name="_count")
    counts = counts.with_columns(pl.col(values.name).cast(pl.String).alias("_text"))
    counts = counts.sort(["_count", "_text"], descending=[True, False]).head(limit)
    return counts.get_column(values.name).to_list()


def _gather_time(times: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    if times is None:
        return None
    return np.where(rows >= 0, times[np.maximum(rows, 0)] if len(times) else 0, np.iinfo(np.int64).min)


def _latest_time(first: np.ndarray | None, second: np.ndarray | None) -> np.ndarray | None:
    """A row joined from two tables is visible once both are: the later of the two times."""
    if first is None or second is None:
        return second if first is None else first
    return np.maximum(first, second)


def audit_feature_leakage(
    tables: Mapping[str, pl.DataFrame],
    schema: GraphSchema,
    entity_table: str,
    entities: pl.DataFrame,
    build: Callable[..., pl.DataFrame] = build_relational_features,
    data_cutoff: int | None = None,
    *,
    max_groups: int = 4,
    seed: int = 0,
    tolerance: float = 1e-5,
    **kwargs,
) -> dict:
    """Rebuild the features of rows sharing an as-of time after dropping, then scrambling, every row later
    than it; any feature that changes read the future. Checks up to ``max_groups`` as-of times (earliest
    and latest included). Returns counts; raises `LeakageError` naming the leaking columns."""
    as_of = as_of_times(entities, data_cutoff)
    distinct = np.unique(as_of.to_numpy())
    chosen = distinct[
        np.unique(np.linspace(0, len(distinct) - 1, min(max_groups, len(distinct))).astype(int))
    ]
    rng = np.random.default_rng(seed)
    leaking: dict[str, str] = {}
    rows_checked = columns_checked = 0
    for moment in chosen:
        subset = entities.filter(as_of == moment)
        reference = build(tables, schema, entity_table, subset, data_cutoff=data_cutoff, **kwargs)
        rows_checked += subset.height
        columns_checked = max(columns_checked, reference.width)
        for how, changed in (("dropped", _drop_after), ("scrambled", _scramble_after)):
            altered = {name: changed(frame, int(moment), rng) for name, frame in tables.items()}
            other = build(altered, schema, entity_table, subset, data_cutoff=data_cutoff, **kwargs)
            for column in _differing_columns(reference, other, tolerance):
                leaking.setdefault(column, f"changes when rows after as_of {int(moment)} are {how}")
    if leaking:
        shown = [f"{column} ({why})" for column, why in list(leaking.items())[:20]]
        more = f" and {len(leaking) - 20} more" if len(leaking) > 20 else ""
        raise LeakageError(
            f"{len(leaking)} feature column(s) read rows after their as-of time: " + "; ".join(shown) + more
        )
    return {"passed": True, "as_of_groups": len(chosen), "rows": rows_checked, "columns": columns_checked}


def _drop_after(frame: pl.DataFrame, moment: int, rng: np.random.Generator) -> pl.DataFrame:
    return frame.filter(pl.col(EVENT_TIME) <= moment) if EVENT_TIME in frame.columns else frame


def _scramble_after(frame: pl.DataFrame, moment: int, rng: np.random.Generator) -> pl.DataFrame:
    """Rows after ``moment``: new random values in every non-key column, times pushed later still."""
    if EVENT_TIME not in frame.columns:
        return frame
    future = frame.get_column(EVENT_TIME) > moment
    count = int(future.sum())
    if count == 0:
        return frame
    replaced = []
    for column, dtype in frame.schema.items():
        if column == NODE_ID or column.startswith("_kumo_fk__"):
            continue
        if column == EVENT_TIME:
            noise = pl.Series(rng.integers(0, 400 * DAY, frame.height), dtype=pl.Int64)
            replaced.append(
                pl.when(future).then(pl.col(column) + noise).otherwise(pl.col(column)).alias(column)
            )
        elif dtype.is_numeric():
            noise = pl.Series(rng.normal(0, 1000, frame.height)).cast(dtype, strict=False)
            replaced.append(pl.when(future).then(noise).otherwise(pl.col(column)).alias(column))
        elif dtype == pl.String:
            noise = pl.Series([f"future-{value}" for value in rng.integers(0, 3, frame.height)])
            replaced.append(pl.when(future).then(noise).otherwise(pl.col(column)).alias(column))
    return frame.with_columns(replaced).sort(EVENT_TIME, maintain_order=True)


def _differing_columns(reference: pl.DataFrame, other: pl.DataFrame, tolerance: float) -> list[str]:
    names = set(reference.columns) ^ set(other.columns)
    if reference.height != other.height:
        return sorted(set(reference.columns) | set(other.columns))
    for column in reference.columns:
        if column in names:
            continue
        a = reference.get_column(column).to_numpy().astype(np.float64)
        b = other.get_column(column).to_numpy().astype(np.float64)
        if not np.allclose(a, b, rtol=tolerance, atol=tolerance, equal_nan=True):
            names.add(column)
    return sorted(names)
