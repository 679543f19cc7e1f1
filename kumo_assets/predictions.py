"""The `predictions` and `embeddings` assets per query: daily partitions downstream of `best_model`.

Thin: each partition calls `serving.daily.predict_day` / `embed_day` (plain, tested without Dagster), which
score the entities the query selects at the partition's anchor (00:00 UTC of its date) with the model
`best_model` stored and publish ``<graph>/predictions/<query>/<date>.parquet`` (``embeddings/`` likewise).
Predictions carry non-blocking checks: score drift against validation (PSI), the share of selected
entities that could not be scored, and the model's age.
"""

from collections.abc import Callable

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Config,
    MaterializeResult,
    MetadataValue,
    ResourceParam,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
)

from kumo_assets.asset_keys import (
    best_model_key,
    embeddings_key,
    feature_store_key,
    graph_store_key,
    predictions_key,
    query_group,
)
from kumo_assets.execution import CPU_BOUND
from kumo_assets.partitions import query_partitions
from relational.pql.queries import NamedQuery
from relational.spec import GraphSpec
from serving.daily import DayResult, embed_day, predict_day
from serving.retraining import RetrainRules
from stores.data_plane import DataPlane
from stores.feature_store import FeatureStores
from stores.graph_store import GraphStores

__all__ = ["ScoringConfig", "build_prediction_assets", "prediction_checks"]

MAX_UNSCORED_SHARE = 0.01


class ScoringConfig(Config):
    threads: int | None = None  # CPU threads for sampling and torch; default: torch's own choice


def build_prediction_assets(spec: GraphSpec, queries: dict[str, NamedQuery]) -> list[AssetsDefinition]:
    """A predictions and an embeddings asset per query, both partitioned by day from the query's test date."""
    assets = []
    for query in queries.values():
        assets += [_predictions_asset(spec, query), _embeddings_asset(spec, query)]
    return assets


def _upstream(spec: GraphSpec, query: NamedQuery) -> list[AssetKey]:
    return [best_model_key(spec, query.name), graph_store_key(spec), feature_store_key(spec)]


def _predictions_asset(spec: GraphSpec, query: NamedQuery) -> AssetsDefinition:
    key = predictions_key(spec, query.name)
    checks = [
        AssetCheckSpec("score_drift", asset=key, description="PSI of the served scores against the validation "
                       "scores (warns above KUMO_RETRAIN_MAX_SCORE_PSI, default 0.25)"),
        AssetCheckSpec("input_drift", asset=key, description="PSI of the top input columns (the GBDT's most "
                       "important features, else the entity's numerical columns) against validation rows"),
        AssetCheckSpec("unscored_share", asset=key, description="Share of the selected entities that could not "
                       f"be scored (warns above {MAX_UNSCORED_SHARE:.0%})"),
        AssetCheckSpec("model_age", asset=key, description="Days since best_model was refit (warns above "
                       "KUMO_RETRAIN_MAX_MODEL_AGE_DAYS, default 30)"),
    ]  # fmt: skip
    return _daily_asset(spec, query, key, predict_day, "predictions", checks,
                        f"Daily predictions of the stored best model for `{query.text}`", {"parquet"})  # fmt: skip


def _embeddings_asset(spec: GraphSpec, query: NamedQuery) -> AssetsDefinition:
    description = f"Daily GNN entity embeddings (float32 vectors) for the entities of `{query.text}`"
    return _daily_asset(spec, query, embeddings_key(spec, query.name), embed_day, "embeddings", [], description,
                        {"pytorch", "parquet"})  # fmt: skip


def _daily_asset(spec: GraphSpec, query: NamedQuery, key: AssetKey, score_day: Callable[..., DayResult], noun: str,
                 checks: list[AssetCheckSpec], description: str, kinds: set[str]) -> AssetsDefinition:  # fmt: skip
    """A daily-partitioned serving asset: one call of ``score_day`` per partition, its checks when it has some."""

    @asset(
        key=key,
        op_tags=CPU_BOUND,
        deps=_upstream(spec, query),
        partitions_def=query_partitions(query),
        check_specs=checks or None,
        group_name=query_group(spec, query.name),
        description=description,
        kinds=kinds,
    )
    def _serving(
        context: AssetExecutionContext,
        config: ScoringConfig,
        data_plane: ResourceParam[DataPlane],
        graph_store: ResourceParam[GraphStores],
        feature_store: ResourceParam[FeatureStores],
    ) -> MaterializeResult:
        day = context.partition_key
        result = score_day(spec, query, day, data_plane, graph_store, feature_store, config.threads)
        context.log.info(f"{result.run.rows} {noun} at {day} -> {result.run.uri}")
        return MaterializeResult(metadata=_day_metadata(result),
                                 check_results=prediction_checks(result.health) if checks else None)  # fmt: skip

    return _serving


def _day_metadata(result: DayResult) -> dict[str, MetadataValue]:
    run = result.run
    return {
        "dagster/row_count": MetadataValue.int(run.rows),
        "dagster/uri": MetadataValue.path(run.uri),
        "anchor": MetadataValue.timestamp(float(result.anchor)),
        "entities_selected": MetadataValue.int(result.selected),
        "entities_not_scored": MetadataValue.int(result.skipped),
        "model_version": MetadataValue.text(run.model_version),
        "data_version": MetadataValue.text(run.data_version),
        "seconds": MetadataValue.float(round(run.seconds, 2)),
        "rows_per_second": MetadataValue.float(round(run.rows / run.seconds, 1) if run.seconds else 0.0),
        **(
            {"highest_scored": preview_table(run.preview)}
            if run.preview is not None and run.preview.height
            else {}
        ),
    }


def preview_table(preview) -> MetadataValue:
    """The highest-scored rows as a native table: entity and the task's columns, numbers rounded."""
    shown = [name for name in preview.columns
             if name not in ("_score", "anchor_time", "model_version", "data_version", "data_age_days")]  # fmt: skip
    records = []
    for row in preview.select(shown).iter_rows(named=True):
        records.append(TableRecord({name: _readable(value) for name, value in row.items()}))
    schema = TableSchema([TableColumn(name, "float" if preview.schema[name].is_float() else "string")
                          for name in shown])  # fmt: skip
    return MetadataValue.table(records, schema)


def _readable(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, list):
        return ", ".join(str(round(item, 4) if isinstance(item, float) else item) for item in value)
    return str(value)


def prediction_checks(health: dict) -> list[AssetCheckResult]:
    """The four non-blocking checks of a predictions partition, each with its numbers in the metadata."""
    rules = RetrainRules.from_environment()
    psi, unscored, age = health.get("score_psi"), health["unscored_share"], health.get("model_age_days")
    inputs = {name: value for name, value in (health.get("input_psi") or {}).items() if value is not None}
    worst = max(inputs.values(), default=0.0)
    return [
        AssetCheckResult(check_name="input_drift", passed=worst <= rules.max_score_psi,
                         severity=AssetCheckSeverity.WARN,
                         metadata={"max_psi": MetadataValue.float(round(worst, 4)),
                                   "threshold": MetadataValue.float(rules.max_score_psi),
                                   **{f"psi {name}"[:60]: MetadataValue.float(round(value, 4))
                                      for name, value in inputs.items()}}),
        AssetCheckResult(check_name="score_drift", passed=psi is None or psi <= rules.max_score_psi,
                         severity=AssetCheckSeverity.WARN,
                         metadata={"psi": MetadataValue.float(round(psi, 4) if psi is not None else float("nan")),
                                   "threshold": MetadataValue.float(rules.max_score_psi)}),
        AssetCheckResult(check_name="unscored_share", passed=unscored <= MAX_UNSCORED_SHARE,
                         severity=AssetCheckSeverity.WARN,
                         metadata={"share": MetadataValue.float(round(unscored, 4)),
                                   "threshold": MetadataValue.float(MAX_UNSCORED_SHARE)}),
        AssetCheckResult(check_name="model_age", passed=age is None or age <= rules.max_model_age_days,
                         severity=AssetCheckSeverity.WARN,
                         metadata={"days": MetadataValue.float(round(age, 2) if age is not None else float("nan")),
                                   "threshold": MetadataValue.float(rules.max_model_age_days)}),
    ]  # fmt: skip
