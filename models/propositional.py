"""Leakage-safe propositionalisation: one row of numeric features per (entity, anchor) from the whole graph.

The feature-engineering baseline (models/gbdt.py) reads these: the entity's own and parent columns, and
aggregates of child tables over several past windows along foreign-key paths (up to two hops), computed
only from rows at or before each row's as-of time. `audit_feature_leakage` proves that by perturbation.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

import numpy as np
import polars as pl

from models.propositional_config import PropositionalConfig
from models.propositional_graph import FeatureGraph
from models.propositional_windows import DAY
from relational.errors import LeakageError
from relational.schema import EVENT_TIME, NODE_ID, GraphSchema

__all__ = [
    "ROW_CUTOFF",
    "as_of_times",
    "audit_feature_leakage",
    "build_relational_features",
    "stale_view_rows",
    "vocabulary_limit",
]

ROW_CUTOFF = "data_cutoff"  # optional column of ``entities``: a per-row end of the database (seconds)


def build_relational_features(
    tables: Mapping[str, pl.DataFrame],
    schema: GraphSchema,
    entity_table: str,
    entities: pl.DataFrame,
    config: PropositionalConfig = PropositionalConfig(),
    data_cutoff: int | None = None,
    vocabulary_limit: int | None = None,
    masked: Mapping[str, Collection[str]] | None = None,
) -> pl.DataFrame:
    """Numeric features for each row of ``entities`` (columns ``_kumo_id``, ``anchor_time``), same order.

    A time-stamped row is visible to a row iff its ``_kumo_time`` <= as_of, with as_of = anchor_time, or
    min(anchor_time, data_cutoff) when the database is frozen at ``data_cutoff`` (then the feature
    ``anchor_gap_days`` says how stale the view is); an optional ``data_cutoff`` column caps it per row
    (see `stale_view_rows`). Windows are measured back from as_of. Data-derived
    choices (rated categories, category codes) read only rows visible to the latest as_of in ``entities``:
    build every split in one call so that they share columns, or pass the ``vocabulary_limit`` (`vocabulary_limit`
    of the training rows) to score other rows with the columns a model was trained on.
    ``masked`` (table -> columns): columns no feature reads, directly or through any aggregate (a static
    target's column: `masked_input_columns`); the other features are the same as without it.
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
    graph = FeatureGraph(tables, schema, config, limit, vocabulary_limit, masked)

    features: dict[str, np.ndarray] = {}
    positions = graph.positions(entity_table, q_entity)
    features.update(graph.static_features(entity_table, positions, q_as_of, config.max_hops, entity_table))
    features.update(graph.aggregate_features(entity_table, q_entity, q_as_of, config.max_hops))
    if config.global_counts:
        features.update(graph.global_counts(q_as_of))
    index = query_of_row.get_column("_query").to_numpy()
    columns: dict[str, np.ndarray] = {}
    if config.calendar_features:
        day = pl.from_epoch(pl.Series(anchor, dtype=pl.Int64), time_unit="s").dt.ordinal_day()
        columns["anchor_day_of_year"] = day.cast(pl.Float32).to_numpy()
    if frozen:
        columns["anchor_gap_days"] = ((anchor - as_of) / DAY).astype(np.float32)
    columns.update({name: values[index].astype(np.float32) for name, values in features.items()})
    return pl.DataFrame({name: pl.Series(name, values, dtype=pl.Float32) for name, values in columns.items()})


def vocabulary_limit(entities: pl.DataFrame, data_cutoff: int | None = None) -> int:
    """The cut data-derived feature choices read when ``entities`` are built in one call: the latest as-of."""
    as_of = as_of_times(entities, data_cutoff)
    return int(as_of.max()) if as_of.len() else 0


def as_of_times(entities: pl.DataFrame, data_cutoff: int | None = None) -> pl.Series:
    """Each row's as-of time: its anchor, capped by ``data_cutoff`` and by a per-row ``data_cutoff`` column."""
    as_of = entities.get_column("anchor_time").cast(pl.Int64)
    if data_cutoff is not None:
        as_of = as_of.clip(upper_bound=int(data_cutoff))
    if ROW_CUTOFF in entities.columns:
        row_cutoff = entities.get_column(ROW_CUTOFF).cast(pl.Int64)
        as_of = pl.select(pl.min_horizontal(as_of, row_cutoff.fill_null(as_of))).to_series()
    return as_of.alias("as_of")


def stale_view_rows(
    rows: pl.DataFrame,
    reference_cutoff: int,
    horizon_days: float,
    step_days: int = 365,
    keep_fresh: bool = True,
) -> pl.DataFrame:
    """Training rows as a database frozen earlier would show them, for a test split evaluated on a frozen
    database (RelBench's regime): each row again for every cutoff ``reference_cutoff - k * step_days``
    (k >= 1) in (anchor - horizon_days, anchor], in a ``data_cutoff`` column (null on the fresh copy).

    Labels are unchanged and cutoffs precede anchors, so this only hides data: it adds no leakage.
    ``horizon_days``: how stale test rows get (last test anchor - data cutoff).
    """
    step, horizon = int(step_days) * DAY, int(horizon_days * DAY)
    earliest = int(rows.get_column("anchor_time").min()) - horizon if rows.height else reference_cutoff
    count = max(0, (int(reference_cutoff) - earliest) // step + 1)
    cutoffs = pl.DataFrame({ROW_CUTOFF: [int(reference_cutoff) - k * step for k in range(1, count + 1)]})
    anchor = pl.col("anchor_time")
    stale = rows.drop(ROW_CUTOFF, strict=False).join(cutoffs.cast(pl.Int64), how="cross")
    stale = stale.filter((pl.col(ROW_CUTOFF) <= anchor) & (pl.col(ROW_CUTOFF) > anchor - horizon))
    if not keep_fresh:
        return stale
    fresh = rows.drop(ROW_CUTOFF, strict=False).with_columns(pl.lit(None, pl.Int64).alias(ROW_CUTOFF))
    return pl.concat([fresh, stale])


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
        names = sorted(leaking)
        shown = ", ".join(names[:30]) + (f" and {len(names) - 30} more" if len(names) > 30 else "")
        example = leaking[names[0]]
        error = LeakageError(
            f"{len(names)} feature column(s) read rows after their as-of time: {shown} (e.g. {names[0]} "
            f"{example}). Features may only read rows with time <= as_of."
        )
        error.columns = names
        raise error
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
