"""Refits of what a study chose: the winner on train + val, and the other family's best when validation
preferred their blend (scored on test as the blend is served).

The GNN refit trains for as many epochs as the winning trial's best epoch (+1) and the GBDT refit for as many
boosting rounds as its selection run kept, neither with early stopping, so nothing is chosen on data the
refit trains on."""

from __future__ import annotations

from typing import Any

from models.blending import blend_outputs, check_same_rows, scored_rows_from_bytes
from models.metrics import compute_metrics
from models.uncertainty import ScoredRows, metric_intervals
from relational.pql.queries import NamedQuery
from relational.spec import GraphSpec
from stores.data_plane import DataPlane
from stores.feature_store import FeatureStores
from stores.graph_store import GraphStores
from training.run import SCORED_ROWS, ModelRunConfig, TrainedModel, query_top_k, train_query_model
from training.study_summary import read_study_summary

__all__ = ["PROTOCOLS", "refit_blend", "refit_config", "refit_winner", "served_test_rows"]


PROTOCOLS = ("refit", "train_rows")  # the final model: refit on train + val, or retrained as its trial was


def refit_config(best: dict[str, Any], protocol: str = "refit") -> ModelRunConfig:
    """The winning trial's parameters as a final-fit run config: ``refit`` trains on train + val for what
    selection chose; ``train_rows`` retrains exactly as the trial did (training rows, early stopping on
    validation; RelBench's protocol) and scores the test rows too."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown final-model protocol {protocol!r}: choose one of {PROTOCOLS}")
    known = set(ModelRunConfig.model_fields)
    params = {name: value for name, value in best["params"].items() if name in known}
    if protocol == "train_rows":
        return ModelRunConfig(**{**params, "holdout": True})
    if best.get("best_epoch") is not None:  # what selection chose: a GNN's best epoch, a GBDT's rounds kept
        if params.get("family", "gnn") == "gnn":
            params["epochs"] = int(best["best_epoch"]) + 1
        else:
            params["gbdt_trees"] = max(1, int(best["best_epoch"]))
    return ModelRunConfig(**{**params, "refit": True})


def refit_winner(
    spec: GraphSpec,
    query: NamedQuery,
    data_plane: DataPlane,
    graph_store: GraphStores,
    feature_store: FeatureStores,
    log=print,
    study_seed: int | None = None,
    protocol: str = "refit",
) -> tuple[TrainedModel, ModelRunConfig, dict[str, Any]]:
    """Refit the best complete trial of the query's latest study (or of one of its study seeds); returns the
    model, its config and the summary."""
    summary = read_study_summary(data_plane, spec.graph_name, query.name, study_seed)
    if summary.get("best") is None:
        raise ValueError(f"study {summary['study_name']} has no complete trial yet: materialise "
                         f"{spec.graph_name}/{query.name}/study with a larger budget")  # fmt: skip
    config = refit_config(summary["best"], protocol)
    log(f"refitting trial {summary['best']['number']} ({summary['metric']}={summary['best']['value']:.4f})")
    trained = train_query_model(spec, query, config, data_plane, graph_store, feature_store, log)
    return trained, config, summary


def served_test_rows(
    spec: GraphSpec, query: NamedQuery, data_plane: DataPlane, task_type: str, run_keys: list[str]
) -> ScoredRows:
    """The test rows as the served model scores them: one refit's outputs, or the blend of the refits named by
    ``run_keys`` (binary scores blend as quantiles among each member's validation scores, as predictions
    serve them)."""
    parts = (spec.graph_name, "models", query.name)
    splits = [
        scored_rows_from_bytes(data_plane.get_bytes(*parts, run_key, SCORED_ROWS)) for run_key in run_keys
    ]
    scored = [split["test"] for split in splits]
    if len(scored) == 1:
        return scored[0]
    check_same_rows(dict(zip(run_keys, scored, strict=True)))
    references = [split["val"].outputs for split in splits]
    blended = blend_outputs(task_type, [rows.outputs for rows in scored], references)
    return ScoredRows(scored[0].labels, blended, scored[0].groups)


def refit_blend(
    spec: GraphSpec,
    query: NamedQuery,
    summary: dict[str, Any],
    winner: TrainedModel,
    data_plane: DataPlane,
    graph_store: GraphStores,
    feature_store: FeatureStores,
    log=print,
    protocol: str = "refit",
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
            members[family] = train_query_model(spec, query, refit_config(refit, protocol), data_plane, graph_store,
                                                feature_store, log)  # fmt: skip
    rows = served_test_rows(spec, query, data_plane, winner.task_type, [m.run_key for m in members.values()])
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
