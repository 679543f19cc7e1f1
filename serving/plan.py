"""What `best_model` tells predictions to serve: the members, the blend, the threshold and the embedding GNN.

The rule (docs/automl.md, fixed before any holdout number is read): serve the blend of each family's best
refit when the study's validation preferred the blend to the winner alone, else the winner. A binary
threshold is chosen where F1 peaks on validation rows the model did not train on: the selected trials' own
validation scores (the refits train on validation rows, so their scores there are optimistic).
"""

from __future__ import annotations

from typing import Any

from models.blending import blend_outputs, scored_rows_from_bytes
from serving.outputs import choose_threshold
from serving.served_model import SCORED_ROWS

__all__ = ["served_plan"]


def served_plan(
    data_plane: Any,
    graph: str,
    query: str,
    task_type: str,
    members: dict[str, str],
    trial_run_keys: dict[str, str | None],
    embedding_run_key: str | None,
) -> dict[str, Any]:
    """The ``served`` entry of pointer.json.

    Args:
        members: family -> run key of each served refit, the winner first (two entries: a blend).
        trial_run_keys: family -> run key of the study trial each refit repeats (its validation scores pick
            the threshold).
        embedding_run_key: the refit GNN whose embeddings the embeddings asset writes (None: no GNN trained).
    """
    plan = {
        "task_type": task_type,
        "members": [{"family": family, "run_key": run_key} for family, run_key in members.items()],
        "blend": len(members) > 1,
        "threshold": None,
        "embeddings": None if embedding_run_key is None else {"run_key": embedding_run_key},
    }
    if task_type == "binary_classification":
        plan["threshold"] = _validation_threshold(data_plane, graph, query, members, trial_run_keys)
    return plan


def _validation_threshold(data_plane, graph: str, query: str, members: dict[str, str],
                          trial_run_keys: dict[str, str | None]) -> dict:  # fmt: skip
    """F1-best threshold on the trials' validation rows (falls back to the refits' own, and says so)."""
    source = "the selected trials' validation rows"
    run_keys = [trial_run_keys.get(family) for family in members]
    if None in run_keys or not all(
        data_plane.exists(graph, "models", query, key, SCORED_ROWS) for key in run_keys
    ):
        run_keys = list(members.values())
        source = "the refits' validation rows (they trained on them: optimistic)"
    rows = [scored_rows_from_bytes(data_plane.get_bytes(graph, "models", query, key, SCORED_ROWS))["val"]
            for key in run_keys]  # fmt: skip
    scores = (
        rows[0].outputs
        if len(rows) == 1
        else blend_outputs("binary_classification", [r.outputs for r in rows])
    )
    return choose_threshold(rows[0].labels, scores, source)
