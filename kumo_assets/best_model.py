"""The ``best_model`` asset per query: refit the study's winner on train + val, score it on test, store it.

The GNN refit trains for as many epochs as the winning trial's best epoch (+1) without early stopping, so
no epoch count is chosen on data it trains on; the GBDT refit keeps the validation rows for early stopping.
When the study found on validation that blending the best trial of each family beats the winner alone
(``family_blend``), the other family's best trial is refit too and the test is scored on the blend.
"""

import time
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)

from kumo_assets.asset_keys import best_model_key, hpo_study_key
from kumo_assets.execution import CPU_BOUND
from kumo_assets.hpo_report import read_study_summary
from kumo_assets.ingest import markdown_table
from kumo_assets.training import (
    SCORED_ROWS,
    ModelRunConfig,
    TrainedModel,
    interval_table,
    model_metadata,
    query_top_k,
    train_query_model,
)
from models.blending import blend_outputs, check_same_rows, scored_rows_from_bytes
from models.metrics import compute_metrics
from models.uncertainty import ScoredRows, metric_intervals
from relational.pql.queries import NamedQuery
from relational.spec import GraphSpec
from serving.plan import served_plan
from stores.data_plane import DataPlane
from stores.feature_store import FeatureStoreResource
from stores.graph_store import GraphStoreResource

__all__ = [
    "BestModelConfig",
    "build_best_model_assets",
    "refit_blend",
    "refit_config",
    "refit_winner",
    "serve_what_was_chosen",
    "write_pointer",
]


class BestModelConfig(Config):
    blend: bool = True  # blend the best model of each family when the study's validation preferred the blend


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
    return trained, config, summary


def write_pointer(spec: GraphSpec, query: NamedQuery, data_plane: DataPlane, summary: dict[str, Any],
                  trained: TrainedModel, config: ModelRunConfig, blend: dict[str, Any] | None,
                  served: dict[str, Any] | None = None) -> None:  # fmt: skip
    """``<graph>/best_model/<query>/pointer.json``: the study, the refit winner's run, the blend (or None), what
    predictions serve (`serving.plan.served_plan`) and when it was refit."""
    data_plane.put_json({"study": summary["study_name"], "trial": summary["best"]["number"],
                         "study_value": summary["best"]["value"], "run_key": trained.run_key,
                         "metrics": trained.metrics, "config": config.model_dump(), "blend": blend,
                         "served": served, "refit_at": time.time()},
                        spec.graph_name, "best_model", query.name, "pointer.json")  # fmt: skip


def serve_what_was_chosen(spec: GraphSpec, query: NamedQuery, data_plane: DataPlane, summary: dict[str, Any],
                          winner: TrainedModel, blend: dict[str, Any] | None, graph_store: GraphStoreResource,
                          feature_store: FeatureStoreResource, log=print) -> dict[str, Any]:  # fmt: skip
    """The ``served`` entry: the winner (or the blend validation preferred), its threshold, and the GNN whose
    embeddings are written (the best GNN trial refit here when the winner is not a GNN)."""
    members = {family: member["run_key"] for family, member in blend["members"].items()} if blend else {}
    members = {winner.family: winner.run_key, **members}
    by_family = summary.get("best_by_family") or {}
    trial_run_keys = {family: (by_family.get(family) or {}).get("run_key") for family in members}
    trial_run_keys[winner.family] = summary["best"].get("run_key")
    embedding = members.get("gnn")
    if embedding is None and "gnn" in by_family:
        log(f"embeddings: refitting the best gnn trial {by_family['gnn']['number']}")
        embedding = train_query_model(spec, query, refit_config(by_family["gnn"]), data_plane, graph_store,
                                      feature_store, log).run_key  # fmt: skip
    return served_plan(
        data_plane, spec.graph_name, query.name, winner.task_type, members, trial_run_keys, embedding
    )


def refit_blend(
    spec: GraphSpec,
    query: NamedQuery,
    summary: dict[str, Any],
    winner: TrainedModel,
    data_plane: DataPlane,
    graph_store: GraphStoreResource,
    feature_store: FeatureStoreResource,
    log=print,
) -> dict[str, Any] | None:
    """Refit the other family's best trial and score the blend of both refits on test; None when the study's
    validation did not prefer the blend (``write_pointer`` records it under ``blend``)."""
    blend = summary.get("family_blend")
    if not blend or not blend.get("blend_is_better") or "refits" not in blend:
        return None
    members = {winner.family: winner}
    for family, refit in blend["refits"].items():
        if family not in members:
            log(f"blending: refitting the best {family} trial {refit['number']} ({refit['value']:.4f})")
            members[family] = train_query_model(spec, query, refit_config(refit), data_plane, graph_store,
                                                feature_store, log)  # fmt: skip
    parts = (spec.graph_name, "models", query.name)
    splits = [scored_rows_from_bytes(data_plane.get_bytes(*parts, member.run_key, SCORED_ROWS))
              for member in members.values()]  # fmt: skip
    scored = [split["test"] for split in splits]
    check_same_rows(dict(zip(members, scored, strict=True)))
    # binary scores blend as quantiles among each member's validation scores, exactly as predictions serve them
    references = [split["val"].outputs for split in splits]
    blended = blend_outputs(winner.task_type, [rows.outputs for rows in scored], references)
    rows = ScoredRows(scored[0].labels, blended, scored[0].groups)
    k = query_top_k(data_plane.get_json(spec.graph_name, "training_tables", f"{query.name}.json"))
    metrics = compute_metrics(winner.task_type, rows.labels, rows.outputs, k=k)
    if winner.task_type == "binary_classification":  # blended ranks: order metrics only, no probabilities
        metrics = {name: metrics[name] for name in ("auroc", "auprc")}
    return {"metric": blend["metric"],
            "members": {family: {"run_key": member.run_key, "test": member.metrics["test"]}
                        for family, member in members.items()},
            "test": {name: float(value) for name, value in metrics.items()},
            "intervals": metric_intervals(winner.task_type, {"test": rows}, k=k),
            "validation": {"blend": blend["blend"], "members": blend["members"]}}  # fmt: skip


def blend_metadata(blend: dict[str, Any]) -> dict[str, MetadataValue]:
    """The members' and the blend's test value of the tune metric, and the blend's interval."""
    metric = blend["metric"]
    rows = [[family, f"{member['test'][metric]:.4f}"] for family, member in blend["members"].items()]
    rows.append(["blend", f"{blend['test'][metric]:.4f}"])
    return {
        "blend": MetadataValue.md(markdown_table(["model", f"test {metric}"], rows)),
        "blend_uncertainty": MetadataValue.md(interval_table(blend["intervals"])),
    }


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
        config: BestModelConfig,
        data_plane: DataPlane,
        graph_store: GraphStoreResource,
        feature_store: FeatureStoreResource,
    ) -> MaterializeResult:
        trained, run_config, summary = refit_winner(spec, query, data_plane, graph_store, feature_store,
                                                    context.log.info)  # fmt: skip
        metadata = model_metadata(trained, run_config)
        blend = (refit_blend(spec, query, summary, trained, data_plane, graph_store, feature_store, context.log.info)
                 if config.blend else None)  # fmt: skip
        served = serve_what_was_chosen(spec, query, data_plane, summary, trained, blend, graph_store, feature_store,
                                       context.log.info)  # fmt: skip
        write_pointer(spec, query, data_plane, summary, trained, run_config, blend, served)
        metadata["served"] = MetadataValue.text(
            " + ".join(f"{m['family']} {m['run_key']}" for m in served["members"])
            + (f" (threshold {served['threshold']['value']:.4f}, {served['threshold']['rule']})" if served["threshold"] else "")
        )  # fmt: skip
        if blend is not None:
            metadata.update(blend_metadata(blend))
        metadata["study"] = MetadataValue.text(summary["study_name"])
        metadata["winning_trial"] = MetadataValue.int(int(summary["best"]["number"]))
        metadata["study_val_" + summary["metric"]] = MetadataValue.float(float(summary["best"]["value"]))
        return MaterializeResult(metadata=metadata)

    return _best_model
