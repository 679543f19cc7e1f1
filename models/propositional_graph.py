"""The graph walk behind `models.propositional.build_relational_features`: static columns hop by hop up,
windowed aggregates of children, grandchildren, enriched children and the latest child's parent.

Every table is cut at the latest as-of time first, so any data-derived choice (rated categories, category
codes) reads only rows that some requested row may see.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace

import numpy as np
import polars as pl

from models.propositional_config import PropositionalConfig
from models.propositional_windows import DAY, RowSource, aggregate_source
from relational.schema import EVENT_TIME, NODE_ID, GraphSchema
from relational.spec import ForeignKey

__all__ = ["FeatureGraph"]


class FeatureGraph:
    """The tables cut at the latest as-of time, with lookups by node id and the feature builders.

    ``masked``: table -> columns no feature may read (a static target's own column, `masked_input_columns`).
    Every builder lists a table's columns through `columns`, so a masked column yields no feature of its own
    table nor any aggregate of it seen from a child, parent or grandchild."""

    def __init__(
        self,
        tables: Mapping[str, pl.DataFrame],
        schema: GraphSchema,
        config: PropositionalConfig,
        limit: int,
        vocabulary_limit: int | None = None,
        masked: Mapping[str, Collection[str]] | None = None,
    ) -> None:
        self.schema, self.config, self.spec = schema, config, config.window_spec()
        self.masked = _checked_mask(schema, masked or {})
        # Category codes, frequencies and the top categories read rows up to vocabulary_limit (default: limit),
        # so a model trained on one cut scores rows at any other anchor with the columns it learned.
        self.vocabulary_limit = limit if vocabulary_limit is None else vocabulary_limit
        cut = max(limit, self.vocabulary_limit)
        self.frames = {
            name: frame.filter(pl.col(EVENT_TIME) <= cut) if EVENT_TIME in frame.columns else frame
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
        """The feature columns of ``table`` of one stype: keys, internal and masked columns left out."""
        frame, masked = self.frames[table], self.masked.get(table, frozenset())
        return [
            column
            for column, kind in self.schema.tables[table].stypes.items()
            if kind == stype
            and column in frame.columns
            and not column.startswith("_kumo")
            and column not in masked
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

    def _in_vocabulary(self, times: np.ndarray | None, rows: int) -> pl.Series:
        """Which rows data-derived choices read: those with time <= vocabulary_limit (all rows when static)."""
        return pl.Series(np.ones(rows, dtype=bool) if times is None else times <= self.vocabulary_limit)

    # ---- static columns (own and parents) -------------------------------------------------------
    def static_features(
        self, table: str, positions: np.ndarray, as_of: np.ndarray, hops: int, prefix: str
    ) -> dict[str, np.ndarray]:
        """The row's own columns and, hop by hop, its parents'; rows later than as_of read as null."""
        times = self.times(table)
        visible = positions >= 0
        if times is not None:
            row_time = _take(times, positions, 0)
            visible &= row_time <= as_of
            features = {f"{prefix}.days_since_row": np.where(visible, (as_of - row_time) / DAY, np.nan)}
        else:
            features = {}
        rows = np.where(visible, positions, -1)
        for column in self.columns(table, "numerical"):
            features[f"{prefix}.{column}"] = _take(self.numeric(table, column), rows, np.nan)
        for column in self.columns(table, "categorical"):
            codes, frequencies = self._encoding(table, column)
            features[f"{prefix}.{column}.code"] = _take(codes, rows, np.nan)
            features[f"{prefix}.{column}.freq"] = _take(frequencies, rows, np.nan)
        for column in self.columns(table, "timestamp"):
            stamp = _take(self.numeric(table, column), rows, np.nan)
            features[f"{prefix}.{column}.days_before"] = np.where(
                stamp <= as_of, (as_of - stamp) / DAY, np.nan
            )
        if hops >= 1:
            for fk in self.schema.tables[table].foreign_keys:
                parent_ids = _take(self.fk_ids(table, fk), rows, -1)
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
            frame = pl.DataFrame({"value": self.frames[table].get_column(column).cast(pl.String)})
            vocabulary = frame.filter(self._in_vocabulary(self.times(table), frame.height))
            encoded = vocabulary.group_by("value").agg((pl.len() / vocabulary.height).alias("freq"))
            encoded = encoded.drop_nulls("value").with_columns(pl.col("value").rank("dense").alias("code"))
            encoded = frame.join(encoded, on="value", how="left", maintain_order="left")
            self._encodings[(table, column)] = tuple(
                encoded.get_column(c).cast(pl.Float64).fill_null(np.nan).to_numpy() for c in ("code", "freq")
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

    def global_counts(self, q_as_of: np.ndarray) -> dict[str, np.ndarray]:
        """Rows of every time-stamped table per window, whatever entity they belong to."""
        spec = replace(self.spec, aggregations=(), last_events=(), last_value=False, recency=False)
        features: dict[str, np.ndarray] = {}
        for table in self.schema.tables:
            times = self.times(table)
            if times is None:
                continue
            source = RowSource(f"global.{table}", np.zeros(len(times), dtype=np.int64), times)
            features.update(
                aggregate_source(source, np.zeros(len(q_as_of), dtype=np.int64), q_as_of, spec)[0]
            )
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
        vocabulary = self._in_vocabulary(None if times is None else times[keep], len(rows))
        for column in self.columns(columns_of, "categorical"):
            values = self.frames[columns_of].get_column(column).gather(rows)
            for value in _top_values(values.filter(vocabulary), self.config.top_categories):
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
        entity = _take(entity_ids, child_rows, -1)
        times = _latest_time(self.times(grandchild), _gather_time(self.times(child), child_rows))
        rows = np.arange(len(entity))
        source = self._source(grandchild, f"{label}>{grand_label}", entity, times, rows)
        return aggregate_source(source, q_entity, q_as_of, self.spec)[0]

    def _via_latest_parent(
        self, child: str, other: ForeignKey, label: str, latest: np.ndarray, q_as_of: np.ndarray
    ) -> dict[str, np.ndarray]:
        """The one-hop features of the static parent of each query's latest child row, at the same as_of."""
        parent_ids = _take(self.fk_ids(child, other), latest, -1)
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


def _checked_mask(schema: GraphSchema, masked: Mapping[str, Collection[str]]) -> dict[str, frozenset[str]]:
    """The mask as sets, refused when it names a table or column the schema does not have: a mask that
    matched nothing would leave the target among the features."""
    for table, columns in masked.items():
        if table not in schema.tables:
            raise ValueError(f"masked column(s) {sorted(columns)} of unknown table {table!r}; tables: "
                             f"{sorted(schema.tables)}")  # fmt: skip
        unknown = set(columns) - set(schema.tables[table].stypes)
        if unknown:
            raise ValueError(f"masked column(s) {sorted(unknown)} are not columns of {table!r}")
    return {table: frozenset(columns) for table, columns in masked.items() if columns}


def _top_values(values: pl.Series, limit: int) -> list:
    """The ``limit`` most frequent non-null values, ties broken by value, for stable columns."""
    if limit <= 0 or values.len() == 0:
        return []
    counts = values.drop_nulls().value_counts(name="_count")
    counts = counts.with_columns(pl.col(values.name).cast(pl.String).alias("_text"))
    counts = counts.sort(["_count", "_text"], descending=[True, False]).head(limit)
    return counts.get_column(values.name).to_list()


def _take(values: np.ndarray, positions: np.ndarray, fill) -> np.ndarray:
    """``values[positions]`` with ``fill`` where a position is negative (also when ``values`` is empty)."""
    if len(values) == 0:
        return np.full(len(positions), fill, dtype=np.result_type(values.dtype, np.min_scalar_type(fill)))
    return np.where(positions >= 0, values[np.maximum(positions, 0)], fill)


def _gather_time(times: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    if times is None:
        return None
    return _take(times, rows, np.iinfo(np.int64).min)


def _latest_time(first: np.ndarray | None, second: np.ndarray | None) -> np.ndarray | None:
    """A row joined from two tables is visible once both are: the later of the two times."""
    if first is None or second is None:
        return second if first is None else first
    return np.maximum(first, second)
