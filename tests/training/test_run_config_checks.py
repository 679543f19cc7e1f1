"""A model run config no model can train with is refused, naming each field and its fix."""

from __future__ import annotations

import pytest

from training.run import ModelRunConfig
from training.run_config_checks import RunConfigError


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"epochs": 0}, "epochs (passes over the training rows) is 0: set it to 1 or more"),
        ({"channels": -1}, "channels (hidden units per layer) is -1"),
        ({"layers": 0}, "layers (message-passing layers) is 0"),
        ({"batch_size": 0}, "batch_size (seed entities per step) is 0"),
        ({"max_steps_per_epoch": 0}, "max_steps_per_epoch (steps per epoch) is 0"),
        ({"family": "gbdt", "gbdt_trees": 0}, "gbdt_trees (boosting rounds) is 0"),
        ({"family": "gbdt", "gbdt_leaves": 0}, "gbdt_leaves (leaves per tree) is 0"),
        ({"lr": 0.0}, "lr (the GNN's learning rate) is 0.0: set it above 0"),
        ({"gbdt_learning_rate": -0.1}, "gbdt_learning_rate (the GBDT's learning rate) is -0.1"),
        ({"dropout": 1.0}, "dropout is 1.0: set it in [0, 1)"),
        ({"fanouts": []}, "fanouts is []: give one neighbour count >= 1 per layer"),
        ({"fanouts": [4, 0]}, "fanouts is [4, 0]"),
        ({"threads": 0}, "threads is 0: set it to 1 or more"),
        ({"family": "GNN"}, "family is 'GNN': choose gnn or gbdt"),
    ],
)
def test_impossible_values_are_named_with_the_fix(fields, message):
    with pytest.raises(RunConfigError, match="model run config: ") as info:
        ModelRunConfig(**fields)
    assert message in str(info.value)


def test_every_problem_is_named_at_once_and_sane_configs_pass():
    with pytest.raises(RunConfigError) as info:
        ModelRunConfig(epochs=0, lr=-1.0)
    assert "epochs" in str(info.value) and "lr (" in str(info.value)
    assert ModelRunConfig(epochs=1, fanouts=[1], dropout=0.0, threads=1).epochs == 1
    assert ModelRunConfig(family="gbdt", gbdt_trees=1).gbdt_trees == 1
