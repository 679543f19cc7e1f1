"""What `best_model` stores for serving: ``<graph>/best_model/<query>/pointer.json`` with the refit winner, the
blend (or None) and the ``served`` plan (members, threshold, the GNN whose embeddings are written)."""

from __future__ import annotations

import time
from typing import Any

from relational.pql.queries import NamedQuery
from relational.spec import GraphSpec
from serving.plan import served_plan
from stores.data_plane import DataPlane
from stores.feature_store import FeatureStores
from stores.graph_store import GraphStores
from training.refit import refit_config
from training.run import ModelRunConfig, TrainedModel, train_query_model

__all__ = ["serve_what_was_chosen", "write_pointer"]


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
                          winner: TrainedModel, blend: dict[str, Any] | None, graph_store: GraphStores,
                          feature_store: FeatureStores, log=print) -> dict[str, Any]:  # fmt: skip
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
