"""The ``best_model`` asset per query: refit the study's winner on train + val, score it on test, store it.

The GNN refit trains for as many epochs as the winning trial's best epoch (+1) without early stopping, so
no epoch count is chosen on data it trains on; the GBDT refit keeps the validation rows for early stopping.
"""

from typing import Any

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, MaterializeResult, MetadataValue, asset

from kumo_assets.execution import CPU_BOUND
from kumo_assets.hpo_assets import hpo_study_key
from kumo_assets.hpo_report import read_study_summary
from kumo_assets.pql.queries import NamedQuery
from kumo_assets.spec import GraphSpec
from kumo_assets.training import ModelRunConfig, TrainedModel, model_metadata, train_query_model
from resources.data_plane import DataPlane
from resources.feature_store import FeatureStoreResource
from resources.graph_store import GraphStoreResource

__all__ = ["best_model_key", "build_best_model_assets", "refit_config", "refit_winner"]


def best_model_key(spec: GraphSpec, name: str) -> AssetKey:
    return AssetKey([spec.graph_name, "best_model", name])


def refit_config(best: dict[str, Any]) -> ModelRunConfig:
    """The winning trial's parameters as a final-fit run config."""
    params = dict(best["params"])
    if params.get("family", "gnn") == "gnn" and best.get("best_epoch") is not None:
        params["epochs"] = int(best["best_epoch"]) + 1
    known = set(ModelRunConfig.model_fields)
    return ModelRunConfig(**{name: value for name, value in params.items() if name in known}, refit=True)


def refit_winner(
    spec: GraphSpec,
    query: NamedQuery,
    data_plane: DataPlane,
    graph_store: GraphStoreResource,
    feature_store: FeatureStoreResource,
    log=print,
) -> tuple[TrainedModel, ModelRunConfig, dict[str, Any]]:
    """Refit the best complete trial of the query's latest study; returns the model, its config, the summary."""
    summary = read_study_summary(data_plane, spec.graph_name, query.name)
    if summary.get("best") is None:
        raise ValueError(f"study {summary['study_name']} has no complete trial yet: materialise "
                         f"{spec.graph_name}/hpo_study/{query.name} with a larger budget")  # fmt: skip
    config = refit_config(summary["best"])
    log(f"refitting trial {summary['best']['number']} ({summary['metric']}={summary['best']['value']:.4f})")
    trained = train_query_model(spec, query, config, data_plane, graph_store, feature_store, log)
    data_plane.put_json({"study": summary["study_name"], "trial": summary["best"]["number"],
                         "study_value": summary["best"]["value"], "run_key": trained.run_key,
                         "metrics": trained.metrics, "config": config.model_dump()},
                        spec.graph_name, "best_model", query.name, "pointer.json")  # fmt: skip
    return trained, config, summary


def build_best_model_assets(spec: GraphSpec, queries: dict[str, NamedQuery]) -> list[AssetsDefinition]:
    return [_best_model_asset(spec, query) for query in queries.values()]


def _best_model_asset(spec: GraphSpec, query: NamedQuery) -> AssetsDefinition:
    @asset(
        op_tags=CPU_BOUND,
        key=best_model_key(spec, query.name),
        deps=[hpo_study_key(spec, query.name)],
        group_name=f"{spec.graph_name}_models",
        description=f"The study's best configuration refit on train + val, scored on test, for `{query.text}`",
        kinds={"pytorch", "lightgbm"},
    )
    def _best_model(
        context: AssetExecutionContext,
        data_plane: DataPlane,
        graph_store: GraphStoreResource,
        feature_store: FeatureStoreResource,
    ) -> MaterializeResult:
        trained, config, summary = refit_winner(spec, query, data_plane, graph_store, feature_store,
                                                context.log.info)  # fmt: skip
        metadata = model_metadata(trained, config)
        metadata["study"] = MetadataValue.text(summary["study_name"])
        metadata["winning_trial"] = MetadataValue.int(int(summary["best"]["number"]))
        metadata["study_val_" + summary["metric"]] = MetadataValue.float(float(summary["best"]["value"]))
        return MaterializeResult(metadata=metadata)

    return _best_model
