"""Refuse a model run config that could not train a model, before anything runs or is written: 0 epochs
"succeeded" with an untrained model before, and an unknown family failed deep inside a trial."""

from __future__ import annotations

from collections.abc import Mapping

from relational.errors import KumoError

__all__ = ["FAMILIES", "RunConfigError", "refuse_impossible_run_config"]

FAMILIES = ("gnn", "gbdt")
# field -> what it counts: each must be a whole number >= 1
AT_LEAST_ONE = {
    "epochs": "passes over the training rows",
    "channels": "hidden units per layer",
    "layers": "message-passing layers",
    "batch_size": "seed entities per step",
    "max_steps_per_epoch": "steps per epoch",
    "gbdt_trees": "boosting rounds",
    "gbdt_leaves": "leaves per tree",
}
POSITIVE = {"lr": "the GNN's learning rate", "gbdt_learning_rate": "the GBDT's learning rate"}


class RunConfigError(KumoError):
    """A model run config names a value no model can train with."""


def refuse_impossible_run_config(values: Mapping[str, object]) -> None:
    """Raise naming every field that cannot train, each with its fix; ``values`` is the run config as a dict."""
    problems = []
    if values.get("family") not in FAMILIES:
        problems.append(f"family is {values.get('family')!r}: choose {' or '.join(FAMILIES)}")
    for name, meaning in AT_LEAST_ONE.items():
        if name in values and int(values[name]) < 1:  # type: ignore[call-overload]
            problems.append(f"{name} ({meaning}) is {values[name]}: set it to 1 or more")
    for name, meaning in POSITIVE.items():
        if name in values and not float(values[name]) > 0:  # type: ignore[arg-type]
            problems.append(f"{name} ({meaning}) is {values[name]}: set it above 0, e.g. 0.005")
    dropout = float(values.get("dropout", 0.0))  # type: ignore[arg-type]
    if not 0.0 <= dropout < 1.0:
        problems.append(f"dropout is {dropout}: set it in [0, 1), e.g. 0.1")
    fanouts = list(values.get("fanouts", [1]))  # type: ignore[call-overload]
    if not fanouts or any(int(k) < 1 for k in fanouts):
        problems.append(f"fanouts is {fanouts}: give one neighbour count >= 1 per layer, e.g. [16, 8]")
    threads = values.get("threads")
    if threads is not None and int(threads) < 1:  # type: ignore[call-overload]
        problems.append(f"threads is {threads}: set it to 1 or more, or leave it out for the default")
    if problems:
        raise RunConfigError("model run config: " + "; ".join(problems))
