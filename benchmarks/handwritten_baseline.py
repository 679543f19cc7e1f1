"""A hand-written feature-engineering + LightGBM baseline: the yardstick the product's AutoML is compared with.

It reads what the product publishes (normalised tables with `_kumo_time`, a training table of entity,
anchor_time, label, split rows) and does what a competent data scientist would do by hand: per entity and
anchor, windowed aggregates of its event tables plus static attributes, using only rows with
`_kumo_time <= anchor_time` (docs/pql.md), then LightGBM early-stopped on validation and refit on train + val
with the chosen number of rounds (the product's protocol). It never scores the test split: the caller does.
Plain polars + numpy + LightGBM (no Dagster). The plans for the example databases and the command line are
in `benchmarks/handwritten_plans.py`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import polars as pl

EVENT_TIME = "_kumo_time"  # relational/schema.py: a row's time as UTC seconds since epoch
DAY = 86_400
JOIN_BUDGET = 4_000_000  # (training row, event) pairs aggregated at once: bounds memory on big tables
SPLITS = ("train", "val", "test")
TASK_TYPES = ("binary_classification", "regression")


@dataclass(frozen=True)
class EventSource:
    """A table of timestamped events linked to the entity, aggregated over look-back windows."""

    table: str
    entity_column: str
    numeric: tuple[str, ...] = ()
    distinct: tuple[str, ...] = ()
    visit: str | None = None  # a column grouping events into visits (a basket): sums are also given per visit


@dataclass(frozen=True)
class FeaturePlan:
    """What to compute for one database: the entity's static attributes and its event sources."""

    entity_table: str | None
    entity_key: str
    static: tuple[str, ...]
    events: tuple[EventSource, ...]
    windows_days: tuple[int, ...] = (7, 28, 91, 365)
    trend_days: int = 28  # the last `trend_days` against the `trend_days` before them (one of the windows)

    def __post_init__(self) -> None:
        if self.trend_days not in self.windows_days:
            raise ValueError(f"trend_days {self.trend_days} must be one of windows_days {self.windows_days}")


def build_features(tables: dict[str, pl.DataFrame], rows: pl.DataFrame, plan: FeaturePlan) -> pl.DataFrame:
    """One feature row per training row (same order), from rows with time <= the row's anchor_time only."""
    keyed = rows.select("entity", "anchor_time").with_row_index("_row")
    features = keyed.select("_row")
    for source in plan.events:
        features = features.join(_event_features(tables[source.table], keyed, source, plan), on="_row")
    if plan.entity_table is not None and plan.static:
        features = features.join(_static_features(tables[plan.entity_table], keyed, plan), on="_row")
    return features.sort("_row").drop("_row")


def _event_features(
    table: pl.DataFrame, keyed: pl.DataFrame, source: EventSource, plan: FeaturePlan
) -> pl.DataFrame:
    """Aggregates of one event source per training row; rows with no visible event get zero counts."""
    distinct = tuple(dict.fromkeys([*source.distinct, *([source.visit] if source.visit else [])]))
    events = (
        table.lazy()
        .select(
            pl.col(source.entity_column).cast(keyed.schema["entity"], strict=False).alias("entity"),
            pl.col(EVENT_TIME).alias("_time"),
            *[pl.col(c).cast(pl.Float64) for c in source.numeric],
            *[pl.col(c) for c in distinct],
        )
        .drop_nulls(["entity", "_time"])
        .join(keyed.lazy().select("entity").unique(), on="entity", how="semi")
        .filter(pl.col("_time") <= keyed["anchor_time"].max())
        .collect()
    )
    per_entity = events.group_by("entity").agg(pl.len().alias("_events"))
    sized = keyed.join(per_entity, on="entity", how="left").with_columns(
        (pl.col("_events").fill_null(0).cum_sum() // JOIN_BUDGET).alias("_chunk")
    )
    chunks = [chunk for _, chunk in sized.group_by("_chunk", maintain_order=True)] or [sized]
    aggregated = pl.concat(_aggregate_chunk(chunk, events, source, distinct, plan) for chunk in chunks)
    zero_when_empty = [c for c in aggregated.columns if c.startswith(_ZERO_WHEN_EMPTY)]
    return (
        keyed.select("_row")
        .join(aggregated, on="_row", how="left")
        .with_columns(pl.col(zero_when_empty).fill_null(0))
        .with_columns(_derived(source, plan))
        .with_columns(pl.selectors.float().fill_nan(None))
        .rename(lambda name: name if name == "_row" else f"{source.table}__{name}")
    )


# Features that are 0 (not missing) for a row whose entity has no visible event: counts, sums, distincts.
_ZERO_WHEN_EMPTY = ("count_", "sum_", "distinct_", "active_days")


def _window_name(days: int | None) -> str:
    return f"{days}d" if days is not None else "all"


def _aggregate_chunk(
    chunk: pl.DataFrame,
    events: pl.DataFrame,
    source: EventSource,
    distinct: tuple[str, ...],
    plan: FeaturePlan,
) -> pl.DataFrame:
    """All aggregates for some training rows: each window is filtered once, then grouped with plain sums."""
    visible = (
        chunk.select("_row", "entity", "anchor_time")
        .join(events, on="entity")
        .filter(pl.col("_time") <= pl.col("anchor_time"))  # the leakage rule: nothing after the anchor
        .with_columns((pl.col("anchor_time") - pl.col("_time")).alias("_age"))
    )
    result = visible.group_by("_row").agg(
        (pl.col("_age").min() / DAY).alias("days_since_last"),
        (pl.col("_age").max() / DAY).alias("days_since_first"),
        (pl.col("_time") // DAY).n_unique().cast(pl.Int64).alias("active_days"),
    )
    for days in [*plan.windows_days, None]:
        # A w-day window is (anchor - w, anchor]: an event exactly w days old is out.
        inside = visible if days is None else visible.filter(pl.col("_age") < days * DAY)
        aggregated = inside.group_by("_row").agg(_window_aggregations(source, distinct, _window_name(days)))
        result = result.join(aggregated, on="_row", how="left")
    trend = plan.trend_days * DAY
    previous = visible.filter((pl.col("_age") >= trend) & (pl.col("_age") < 2 * trend))
    aggregated = previous.group_by("_row").agg(
        _window_aggregations(source, (), f"prev_{plan.trend_days}d", sums_only=True)
    )
    return result.join(aggregated, on="_row", how="left")


def _window_aggregations(
    source: EventSource, distinct: tuple[str, ...], tag: str, sums_only: bool = False
) -> list[pl.Expr]:
    """Count, sum/mean/max/min of each numeric column and distinct counts (nulls are not a value)."""
    expressions = [pl.len().cast(pl.Int64).alias(f"count_{tag}")]
    for column in source.numeric:
        values = pl.col(column)
        expressions.append(values.sum().alias(f"sum_{column}_{tag}"))
        if not sums_only:
            expressions += [
                values.mean().alias(f"mean_{column}_{tag}"),
                values.max().alias(f"max_{column}_{tag}"),
                values.min().alias(f"min_{column}_{tag}"),
            ]
    for column in distinct:
        n_unique = pl.col(column).n_unique().cast(pl.Int64) - (pl.col(column).null_count() > 0).cast(pl.Int64)
        expressions.append(n_unique.alias(f"distinct_{column}_{tag}"))
    return expressions


def _derived(source: EventSource, plan: FeaturePlan) -> list[pl.Expr]:
    """Features a tree cannot form itself: trend (last window minus the one before), events per active day
    and, with visits, each sum per visit."""
    recent, previous = f"{plan.trend_days}d", f"prev_{plan.trend_days}d"
    expressions = [
        (pl.col("count_all") / pl.col("active_days")).alias("events_per_active_day"),
        (pl.col(f"count_{recent}") - pl.col(f"count_{previous}")).alias(f"change_count_{recent}"),
        *[
            (pl.col(f"sum_{column}_{recent}") - pl.col(f"sum_{column}_{previous}")).alias(
                f"change_sum_{column}_{recent}"
            )
            for column in source.numeric
        ],
    ]
    if source.visit:
        for days in [*plan.windows_days, None]:
            tag = _window_name(days)
            for column in source.numeric:
                ratio = pl.col(f"sum_{column}_{tag}") / pl.col(f"distinct_{source.visit}_{tag}")
                expressions.append(ratio.alias(f"{column}_per_{source.visit}_{tag}"))
    return expressions


def _static_features(table: pl.DataFrame, keyed: pl.DataFrame, plan: FeaturePlan) -> pl.DataFrame:
    """The entity's own attributes; hidden while the entity row's time (if any) is after the anchor."""
    timed = EVENT_TIME in table.columns
    attributes = (
        table.select(
            pl.col(plan.entity_key).cast(keyed.schema["entity"], strict=False).alias("entity"),
            *plan.static,
            *([pl.col(EVENT_TIME).alias("_time")] if timed else []),
        )
        .drop_nulls("entity")
        .unique("entity", keep="first", maintain_order=True)
    )
    joined = keyed.join(attributes, on="entity", how="left")
    visible = pl.col("_time") <= pl.col("anchor_time") if timed else pl.lit(True)
    return joined.select(
        "_row",
        *[pl.when(visible).then(pl.col(c)).alias(f"{plan.entity_table}__{c}") for c in plan.static],
    )


def feature_matrix(features: pl.DataFrame) -> tuple[np.ndarray, list[str], list[str]]:
    """Float matrix for LightGBM (null -> NaN), the column names and those that are categorical (strings)."""
    columns, categorical = [], []
    for name, dtype in features.schema.items():
        column = features[name]
        if dtype in (pl.String, pl.Categorical, pl.Enum):
            vocabulary = column.cast(pl.String).drop_nulls().unique().sort()
            codes = column.cast(pl.String).replace_strict(
                vocabulary, pl.int_range(vocabulary.len(), eager=True), default=None
            )
            columns.append(codes.cast(pl.Float64).to_numpy())
            categorical.append(name)
        else:
            columns.append(column.cast(pl.Float64).fill_nan(None).to_numpy())
    matrix = np.column_stack(columns) if columns else np.empty((features.height, 0))
    return matrix.astype(np.float64), list(features.columns), categorical


def lightgbm_params(task_type: str, seed: int, threads: int, regression_objective: str) -> dict[str, Any]:
    """Standard settings: lr 0.05, 31 leaves, 20 rows per leaf, 80% features and bagging; AUROC or MAE."""
    if task_type not in TASK_TYPES:
        raise ValueError(f"task_type {task_type!r} is not one of {TASK_TYPES}")
    binary = task_type == "binary_classification"
    return {
        "objective": "binary" if binary else regression_objective,
        "metric": "auc" if binary else "l1",  # models/metrics.py tunes binary on auroc, regression on mae
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_data_in_leaf": 20,
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "seed": seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": threads,
        "verbosity": -1,
    }


def fit_and_score(
    features: pl.DataFrame,
    rows: pl.DataFrame,
    task_type: str,
    *,
    seed: int = 0,
    max_rounds: int = 2000,
    early_stopping_rounds: int = 100,
    threads: int = 0,
    regression_objective: str = "regression_l1",
) -> dict[str, Any]:
    """Early-stop on val (train-only model), refit on train + val for exactly those rounds, predict test."""
    if features.height != rows.height:
        raise ValueError(f"{features.height} feature rows for {rows.height} training rows")
    if rows["label"].null_count():
        raise ValueError("the training table has null labels")
    matrix, names, categorical = feature_matrix(features)
    labels = rows["label"].cast(pl.Float64).to_numpy()
    split = rows["split"].to_numpy()
    train, val, test = (np.flatnonzero(split == name) for name in SPLITS)
    if not train.size or not val.size:
        raise ValueError(f"need train and val rows to early-stop, got {train.size} and {val.size}")
    params = lightgbm_params(task_type, seed, threads, regression_objective)

    def dataset(index: np.ndarray, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        return lgb.Dataset(
            matrix[index],
            labels[index],
            feature_name=names,
            categorical_feature=categorical,
            reference=reference,
            free_raw_data=False,
        )

    started = time.perf_counter()
    train_set = dataset(train)
    model = lgb.train(
        params,
        train_set,
        num_boost_round=max_rounds,
        valid_sets=[dataset(val, train_set)],
        valid_names=["val"],
        callbacks=[lgb.early_stopping(early_stopping_rounds, first_metric_only=True, verbose=False)],
    )
    rounds = model.best_iteration or model.current_iteration()
    val_predictions = model.predict(matrix[val], num_iteration=rounds)
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    refit = lgb.train(params, dataset(np.concatenate([train, val])), num_boost_round=rounds)
    test_predictions = refit.predict(matrix[test]) if test.size else np.empty(0)
    gain = model.feature_importance("gain", iteration=rounds)
    return {
        "rounds": rounds,
        "val_rows": val,
        "test_rows": test,
        "val_predictions": np.asarray(val_predictions, dtype=np.float64),
        "test_predictions": np.asarray(test_predictions, dtype=np.float64),
        "fit_seconds": fit_seconds,
        "refit_seconds": time.perf_counter() - started,
        "feature_count": len(names),
        "top_features": sorted(zip(names, gain.tolist(), strict=True), key=lambda item: -item[1])[:15],
        "model": model,
        "refit_model": refit,
    }


def split_arrays(rows: pl.DataFrame, result: dict[str, Any], split: str) -> tuple[np.ndarray, np.ndarray]:
    """(labels, predictions) of the "val" or "test" rows, in training-table order, for compute_metrics."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    index = result[f"{split}_rows"]
    return rows["label"].to_numpy()[index], result[f"{split}_predictions"]


def aligned_predictions(rows: pl.DataFrame, result: dict[str, Any]) -> np.ndarray:
    """One prediction per training row: val from the train-only model, test from the refit, train NaN."""
    predictions = np.full(rows.height, np.nan)
    predictions[result["val_rows"]] = result["val_predictions"]
    predictions[result["test_rows"]] = result["test_predictions"]
    return predictions
