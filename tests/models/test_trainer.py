"""The trainer: resuming from a checkpoint equals never stopping; early stopping, step budgets, callbacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.checkpoints import DataPlaneCheckpoints
from models.gnn import GNNConfig
from models.trainer import TrainerConfig
from stores.data_plane import DataPlane
from stores.fetcher import TrainingSplit
from tests.support.devices import DEVICES
from tests.support.model_helpers import signal_graph
from training.trial import GNNTrialConfig, run_gnn_trial


@pytest.fixture(scope="module")
def signal(tmp_path_factory):
    return signal_graph(tmp_path_factory.mktemp("signal"), users=120)


def config(**trainer) -> GNNTrialConfig:
    settings = {"epochs": 4, "lr": 0.01, "patience": 0, "device": "cpu", "seed": 5, **trainer}
    return GNNTrialConfig(GNNConfig(channels=16, dropout=0.3), TrainerConfig(**settings), fanouts=(6, 3),
                          batch_size=16)  # fmt: skip


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("device", DEVICES)
def test_resumed_training_reaches_the_same_result_as_an_uninterrupted_run(signal, tmp_path, device):
    """Bit for bit on the CPU. On CUDA, scatter-sums add in a varying order (atomics), so two uninterrupted
    runs differ in the last bits too: there the resumed run must match within float noise."""
    graph, features, splits = signal
    settings = config(device=device)
    whole = run_gnn_trial(graph, features, splits, "binary_classification", settings,
                          DataPlaneCheckpoints(DataPlane(root=str(tmp_path)), "whole"), threads=1)  # fmt: skip

    def crash_after_epoch_1(epoch, metrics):
        if epoch == 1:
            raise Interrupted

    store = DataPlaneCheckpoints(DataPlane(root=str(tmp_path)), "resumed")
    with pytest.raises(Interrupted):
        run_gnn_trial(graph, features, splits, "binary_classification", settings, store, crash_after_epoch_1,
                      threads=1)  # fmt: skip
    resumed = run_gnn_trial(graph, features, splits, "binary_classification", settings, store, threads=1)
    assert resumed.fit.resumed_from == 1 and whole.fit.resumed_from is None
    exact = device == "cpu"
    tolerance = {"rtol": 0, "atol": 0} if exact else {"rtol": 1e-3, "atol": 1e-3}
    torch.testing.assert_close([row["loss"] for row in resumed.fit.history],
                               [row["loss"] for row in whole.fit.history], **tolerance)  # fmt: skip
    for name, tensor in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[name], tensor, **tolerance)
    if exact:
        assert resumed.metrics == whole.metrics
    else:
        for split, metrics in whole.metrics.items():
            for name, value in metrics.items():
                assert resumed.metrics[split][name] == pytest.approx(value, abs=0.02), (split, name)


def test_a_checkpoint_of_another_model_is_refused_with_the_fix(signal, tmp_path):
    """A run key's checkpoint left by other model code (e.g. before SAGE layers were stacked) must not be
    half-loaded or silently dropped."""
    graph, features, splits = signal
    store = DataPlaneCheckpoints(DataPlane(root=str(tmp_path)), "run")

    def stop(epoch, metrics):
        raise Interrupted

    with pytest.raises(Interrupted):
        run_gnn_trial(graph, features, splits, "binary_classification", config(), store, stop, threads=1)
    other = GNNTrialConfig(
        GNNConfig(conv="gin", channels=16), config().trainer, fanouts=(6, 3), batch_size=16
    )
    with pytest.raises(ValueError, match=r"written by a different model .* delete it") as error:
        run_gnn_trial(graph, features, splits, "binary_classification", other, store, threads=1)
    assert str(tmp_path / "run") in str(error.value)


def test_a_different_seed_gives_a_different_run(signal):
    """Guards the equality test above: it would pass vacuously if seeds did not matter."""
    graph, features, splits = signal
    first = run_gnn_trial(graph, features, splits, "binary_classification", config(epochs=1), threads=1)
    other = run_gnn_trial(
        graph, features, splits, "binary_classification", config(epochs=1, seed=6), threads=1
    )
    assert first.fit.history[0]["loss"] != other.fit.history[0]["loss"]


def test_early_stopping_and_step_budget(signal):
    graph, features, splits = signal
    seen = []
    result = run_gnn_trial(
        graph, features, splits, "binary_classification", config(epochs=10, lr=0.0, patience=2,
                                                                 max_steps_per_epoch=2),
        callback=lambda epoch, metrics: seen.append((epoch, metrics["auroc"])), threads=1,
    )  # fmt: skip
    # lr 0: the metric never improves after epoch 0, so patience 2 stops after epoch 2.
    assert [epoch for epoch, _ in seen] == [0, 1, 2]
    assert result.fit.best_epoch == 0 and result.fit.steps == 6
    assert result.fit.val_metrics["auroc"] == seen[0][1] == result.metrics["val"]["auroc"]


def test_regression_predictions_stay_within_training_label_percentiles(signal):
    graph, features, splits = signal
    regression = {name: type(split)(split.name, split.node_type, split.seeds, split.seed_times,
                                    split.labels * 10.0 + 3.0)
                  for name, split in splits.items()}  # fmt: skip
    result = run_gnn_trial(graph, features, regression, "regression", config(epochs=2), threads=1)
    low, high = result.spec.clamp
    assert low == pytest.approx(3.0) and high == pytest.approx(13.0)
    output = result.predictions["test"].output
    assert output.min() >= low and output.max() <= high
    assert set(result.metrics["test"]) == {"mae", "rmse", "r2"}


def test_ranking_over_fewer_targets_than_k_counts_the_missing_places_as_misses(signal):
    graph, features, splits = signal
    ranked = {}
    for name, split in splits.items():  # 3 categories: the binary label, its opposite, never
        label = np.asarray(split.labels, dtype=np.uint8)
        multi_hot = np.stack([label, 1 - label, np.zeros_like(label)], axis=1)
        ranked[name] = TrainingSplit(split.name, split.node_type, split.seeds, split.seed_times, multi_hot,
                                     split.anchor_times)  # fmt: skip
    result = run_gnn_trial(graph, features, ranked, "ranking", config(epochs=1, top_k=5), threads=1)
    metrics = result.metrics["test"]
    assert result.predictions["test"].output.shape[1] == 3
    assert set(metrics) == {"map@5", "recall@5", "precision@5", "ndcg@5"}
    assert metrics["recall@5"] == pytest.approx(1.0)  # every relevant category is among the 3 ranked
    assert metrics["precision@5"] == pytest.approx(1 / 5)  # one relevant per row, 5 places


def test_an_unknown_precision_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="choose one of auto, tf32, bf16, fp32"):
        TrainerConfig(precision="fp16")
