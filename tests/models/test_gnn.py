"""The GNN family learns a rule that lives in neighbours' features, through the real stores and fetcher."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.gnn import CONV_KINDS, GNNConfig, RelationalGNN
from models.heads import TaskSpec
from models.trainer import TrainerConfig
from stores.fetcher import MinibatchFetcher, TrainingSplit
from stores.sampler import SamplerConfig
from tests.support.devices import DEVICE_PRECISIONS
from tests.support.model_helpers import signal_graph
from training.trial import GNNTrialConfig, run_gnn_trial


@pytest.fixture(scope="module")
def signal(tmp_path_factory):
    return signal_graph(tmp_path_factory.mktemp("signal"))


def quick_config(conv: str, epochs: int = 8, device: str = "cpu", precision: str = "auto") -> GNNTrialConfig:
    return GNNTrialConfig(
        GNNConfig(conv=conv, channels=32, layers=2, attention_heads=4),
        TrainerConfig(epochs=epochs, lr=0.01, patience=0, device=device, seed=3, precision=precision),
        fanouts=(8, 4), batch_size=32, eval_batch_size=64,
    )  # fmt: skip


@pytest.mark.parametrize(("device", "precision"), DEVICE_PRECISIONS)
@pytest.mark.parametrize("conv", CONV_KINDS)
def test_each_conv_learns_the_neighbour_rule(signal, conv, device, precision):
    graph, features, splits = signal
    config = quick_config(conv, device=device, precision=precision)
    result = run_gnn_trial(graph, features, splits, "binary_classification", config, threads=1)
    # Users have no features: chance is 0.5. The rule is exact, so a working model gets far above it.
    assert result.metrics["test"]["auroc"] > 0.9, result.metrics
    assert result.predictions["test"].embedding.shape == (len(splits["test"].seeds), 32)
    assert np.array_equal(result.predictions["test"].input_id, np.arange(len(splits["test"].seeds)))


def test_without_message_passing_the_rule_is_not_learnable(signal):
    """The control: zero layers (users see only their own constant) stays near chance."""
    graph, features, splits = signal
    config = quick_config("sage")
    config = GNNTrialConfig(GNNConfig(channels=32, layers=0), config.trainer, config.fanouts, batch_size=32)
    result = run_gnn_trial(graph, features, splits, "binary_classification", config, threads=1)
    assert result.metrics["test"]["auroc"] < 0.7


def test_shallow_embeddings_memorise_entities_seen_in_training(signal):
    """With no message passing, only a per-user vector can fit labels of users seen in training."""
    graph, features, splits = signal
    train = splits["train"]
    same_users = {"train": train, "val": train, "test": train}
    base = quick_config("sage", epochs=30)
    for shallow, check in (((), lambda auroc: auroc < 0.7), (("users",), lambda auroc: auroc > 0.95)):
        model = GNNConfig(channels=32, layers=0, shallow=shallow)
        config = GNNTrialConfig(model, base.trainer, base.fanouts, batch_size=32)
        result = run_gnn_trial(graph, features, same_users, "binary_classification", config, threads=1)
        assert check(result.metrics["test"]["auroc"]), (shallow, result.metrics["test"])


def test_the_anchor_encoding_tells_a_stale_view_from_a_fresh_one(signal):
    """Labels that say only whether the seed's view is two years older than its prediction time: without
    the anchor encoding no input differs, so only the model that has it can learn them."""
    graph, features, splits = signal
    rng = np.random.default_rng(0)

    def stale_or_fresh(split):
        stale = rng.random(len(split.seeds)) < 0.5
        anchors = split.seed_times + np.where(stale, 2 * 365 * 86_400, 0)
        return TrainingSplit(f"{split.name}/staleness", split.node_type, split.seeds, split.seed_times,
                             stale.astype(np.int64), anchors)  # fmt: skip

    relabelled = {name: stale_or_fresh(split) for name, split in splits.items()}
    base = quick_config("sage", epochs=6)
    for anchor_encoding, check in ((False, lambda auroc: auroc < 0.7), (True, lambda auroc: auroc > 0.95)):
        model = GNNConfig(channels=32, layers=0, absolute_time=anchor_encoding)
        config = GNNTrialConfig(model, base.trainer, base.fanouts, batch_size=32)
        result = run_gnn_trial(graph, features, relabelled, "binary_classification", config, threads=1)
        assert check(result.metrics["test"]["auroc"]), (anchor_encoding, result.metrics["test"])


def test_trimmed_layers_give_the_same_seed_outputs_as_untrimmed(signal, monkeypatch):
    import models.gnn as gnn

    graph, features, splits = signal
    batch = next(iter(MinibatchFetcher(graph, features, SamplerConfig((8, 4)), 64, prefetch=0)
                      .epoch(splits["train"], 0)))  # fmt: skip
    for conv in CONV_KINDS:
        torch.manual_seed(0)
        model = RelationalGNN(list(graph.node_counts), graph.edge_types, features.schema["node_types"], "users",
                              TaskSpec("binary_classification"), GNNConfig(conv=conv, channels=16)).eval()  # fmt: skip
        trimmed, _ = model(batch)
        with monkeypatch.context() as patch:
            patch.setattr(
                gnn, "trim_to_layer", lambda layer, nodes, edges, x, edge_index: (x, edge_index, None)
            )
            full, _ = model(batch)
        torch.testing.assert_close(trimmed, full)


def test_config_errors_name_the_fix():
    with pytest.raises(ValueError, match="choose one of"):
        GNNConfig(conv="gcn")
    with pytest.raises(ValueError, match="multiple of attention_heads"):
        GNNConfig(conv="hgt", channels=30, attention_heads=4)
