"""The model `best_model` stored for a query, loaded for scoring: one refit model or a blend of two.

`best_model` writes ``<graph>/best_model/<query>/pointer.json``; its ``served`` entry names the members (run
keys under ``<graph>/models/<query>/``), whether they are blended, the binary decision threshold chosen on
validation and the GNN whose entity embeddings the embeddings asset writes. Loading reads each member's
``summary.json`` and weights; nothing here trains or imports Dagster.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.blending import scored_rows_from_bytes
from models.checkpoints import from_bytes
from models.gbdt import GBDTModel
from models.gbdt_links import LinkRanker
from models.gnn import GNNConfig, RelationalGNN
from models.heads import TaskSpec
from models.trainer import TrainerConfig
from serving.errors import ServingError
from training.link_trial import LinkQuery, link_query
from training.run import MASKED_INPUTS, masked_columns

__all__ = ["GBDTMember", "GNNMember", "ServedModel", "ServingError", "load_member", "load_served_model"]

POINTER = "pointer.json"
SCORED_ROWS = "scored.npz"


def _masked(summary: dict) -> dict[str, tuple[str, ...]]:
    """The columns the run's training hid from its inputs (its table's ``masked_input_columns``, by table):
    scoring hides the same ones, so a static target's column is no input at prediction time either."""
    return masked_columns(summary.get(MASKED_INPUTS) or [])


@dataclass
class GNNMember:
    """A refit GNN: its weights and everything needed to rebuild it and to sample as it was trained."""

    run_key: str
    summary: dict
    state: dict  # model.pt: state_dict, config (model, trainer, sampling), spec, seed_type
    reference: np.ndarray | None = None  # its validation outputs (the binary blend's quantile reference)
    family: str = "gnn"

    @property
    def spec(self) -> TaskSpec:
        return TaskSpec(**self.state["spec"])

    @property
    def model_config(self) -> GNNConfig:
        values = dict(self.state["config"]["model"])
        values["shallow"] = tuple(values.get("shallow", ()))
        return GNNConfig(**values)

    @property
    def trainer_config(self) -> TrainerConfig:
        return TrainerConfig(**self.state["config"]["trainer"])

    @property
    def masked(self) -> dict[str, tuple[str, ...]]:
        return _masked(self.summary)

    def build(self, node_counts: dict[str, int], edge_types: list, feature_schema: dict) -> RelationalGNN:
        """The network with its trained weights, for a graph of these node types and features."""
        model = RelationalGNN(list(node_counts), edge_types, feature_schema, self.state["seed_type"],
                              self.spec, self.model_config, node_counts)  # fmt: skip
        try:
            model.load_state_dict(self.state["state_dict"])
        except RuntimeError as error:
            raise ServingError(
                f"GNN {self.run_key} does not fit the current graph/feature store ({str(error).splitlines()[0]}"
                "...): the stores changed shape since it was trained; re-materialise best_model"
            ) from None
        return model.eval()


@dataclass
class GBDTMember:
    """A refit LightGBM model and the cut its category columns were chosen at."""

    run_key: str
    summary: dict
    model: GBDTModel | LinkRanker  # a pair ranker for link prediction
    reference: np.ndarray | None = None
    family: str = "gbdt"

    @property
    def vocabulary_limit(self) -> int | None:
        return self.summary.get("vocabulary_limit")

    @property
    def masked(self) -> dict[str, tuple[str, ...]]:
        return _masked(self.summary)


Member = GNNMember | GBDTMember


@dataclass
class ServedModel:
    """What predictions serve for one query (the rule that picks it is in docs/automl.md)."""

    graph: str
    query: str
    task_type: str
    members: list[Member]
    blend: bool
    threshold: dict | None  # binary: {"value", "rule", ...}, chosen on validation
    embedding_member: GNNMember | None
    pointer: dict = field(default_factory=dict)
    link: LinkQuery | None = None  # link prediction: what the query ranks (a GBDT ranker builds candidates)

    @property
    def version(self) -> str:
        """The model version every output row carries: the members' run keys (``+`` between blend members)."""
        return "+".join(f"{member.family}:{member.run_key}" for member in self.members)

    @property
    def refit_at(self) -> float | None:
        return self.pointer.get("refit_at")


def load_member(data_plane: Any, graph: str, query: str, family: str, run_key: str) -> Member:
    """One trained run of either family from ``<graph>/models/<query>/<run_key>/``."""
    parts = (graph, "models", query, run_key)
    try:
        summary = data_plane.get_json(*parts, "summary.json")
    except FileNotFoundError:
        raise ServingError(f"model run {run_key} of {graph}/{query} is missing on the data plane "
                           f"({data_plane.uri(*parts)}): re-materialise {graph}/{query}/best_model") from None  # fmt: skip
    reference = None
    if data_plane.exists(*parts, SCORED_ROWS):
        scored = scored_rows_from_bytes(data_plane.get_bytes(*parts, SCORED_ROWS))
        reference = np.asarray(scored["val"].outputs) if "val" in scored else None
    if family == "gnn":
        return GNNMember(run_key, summary, from_bytes(data_plane.get_bytes(*parts, "model.pt")), reference)
    if family == "gbdt":
        kind = LinkRanker if summary.get("task_type") == "link_prediction" else GBDTModel
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "model.lgb"
            path.write_bytes(data_plane.get_bytes(*parts, "model.lgb"))
            return GBDTMember(run_key, summary, kind.load(path), reference)
    raise ServingError(f"unknown model family {family!r} in {graph}/{query}'s pointer")


def load_served_model(data_plane: Any, graph: str, query: str) -> ServedModel:
    """The members, blend, threshold and embedding GNN that ``best_model`` stored for ``graph/query``."""
    parts = (graph, "best_model", query, POINTER)
    try:
        pointer = data_plane.get_json(*parts)
    except FileNotFoundError:
        raise ServingError(f"no stored model for {graph}/{query} ({data_plane.uri(*parts)} is missing): "
                           f"materialise {graph}/{query}/study and then {graph}/{query}/best_model") from None  # fmt: skip
    served = pointer.get("served")
    if served is None:
        raise ServingError(f"{data_plane.uri(*parts)} was written before predictions existed: "
                           f"re-materialise {graph}/{query}/best_model")  # fmt: skip
    members = [
        load_member(data_plane, graph, query, item["family"], item["run_key"]) for item in served["members"]
    ]
    embedding = None
    if served.get("embeddings"):
        run_key = served["embeddings"]["run_key"]
        embedding = next((m for m in members if m.run_key == run_key), None) or load_member(
            data_plane, graph, query, "gnn", run_key
        )
    link = None
    if served["task_type"] == "link_prediction":
        link = link_query(data_plane.get_json(graph, "training_tables", f"{query}.json")["parsed"])
    return ServedModel(graph, query, served["task_type"], members, bool(served["blend"]), served.get("threshold"),
                       embedding, pointer, link)  # fmt: skip


def data_version(graph_version: str, feature_version: str, table_hashes: dict[str, str | None]) -> str:
    """One short version for the data a row was scored on: the stores' versions and the tables' hashes."""
    digest = hashlib.sha256(repr(sorted(table_hashes.items())).encode()).hexdigest()[:12]
    return f"graph:{graph_version[:12]}|features:{feature_version[:12]}|tables:{digest}"
