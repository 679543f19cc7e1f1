"""The GNN's link head: with revisit scores it learns "an entity links again to what it linked before",
which a vector per target (the RDL head) cannot express when every target is equally popular."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from models.gnn import GNNConfig
from models.trainer import TrainerConfig
from stores.feature_store import NodeTable, build_feature_store, open_feature_store
from stores.fetcher import TrainingSplit
from stores.graph_store import EdgeList, build_graph_store, open_graph_store
from tests.support.devices import DEVICES
from training.trial import SPLITS, GNNTrialConfig, run_gnn_trial

ANCHOR = 1_000_000


def repeat_graph(root, users: int = 150, items: int = 24, seed: int = 0):
    """users <- events -> items. Each user's past events are mostly its 2 favourite items (drawn uniformly,
    so no item is more popular than another); the label is those favourites, its next links."""
    rng = np.random.default_rng(seed)
    favourites = np.stack([rng.choice(items, 2, replace=False) for _ in range(users)])
    owner = np.repeat(np.arange(users), 6)
    liked = rng.random(len(owner)) < 0.8
    item = np.where(
        liked, favourites[owner, rng.integers(0, 2, len(owner))], rng.integers(0, items, len(owner))
    )
    times = np.sort(rng.integers(0, ANCHOR, len(owner)))
    build_graph_store(
        root / "graph", {"users": users, "items": items, "events": len(owner)}, {"events": times.astype(np.int64)},
        [EdgeList("events", "user", "users", np.arange(len(owner)), owner.astype(np.int64)),
         EdgeList("events", "item", "items", np.arange(len(owner)), item.astype(np.int64))],
    )  # fmt: skip
    build_feature_store(root / "features", {
        "users": NodeTable(pl.DataFrame({"_": np.zeros(users)}), {}),
        "items": NodeTable(pl.DataFrame({"noise": rng.normal(size=items)}), {"noise": {"stype": "numerical"}}),
        "events": NodeTable(pl.DataFrame({"_": np.zeros(len(owner))}), {}),
    })  # fmt: skip
    labels = np.zeros((users, items), dtype=np.uint8)
    labels[np.arange(users)[:, None], favourites] = 1
    parts = np.array_split(rng.permutation(users), [int(0.6 * users), int(0.8 * users)])
    splits = {name: TrainingSplit(f"repeat/{name}", "users", part, np.full(len(part), ANCHOR), labels[part])
              for name, part in zip(SPLITS, parts, strict=True)}  # fmt: skip
    return open_graph_store(root / "graph"), open_feature_store(root / "features"), splits


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("revisits", [True, False])
def test_revisit_scores_learn_repeat_links_a_target_vector_cannot(tmp_path, revisits, device):
    graph, features, splits = repeat_graph(tmp_path)
    config = GNNTrialConfig(GNNConfig(channels=32, revisits=revisits),
                            TrainerConfig(epochs=12, lr=0.01, patience=0, seed=0, top_k=2, device=device),
                            fanouts=(8, 2), batch_size=32)  # fmt: skip
    result = run_gnn_trial(graph, features, splits, "link_prediction", config, threads=1,
                           label_values=list(range(24)), target_type="items")  # fmt: skip
    score = result.metrics["test"]["map@2"]
    chance = 2 / 24
    if revisits:
        assert score > 0.6, result.metrics["test"]
    else:  # every item is equally popular: without the user's own links the head is near chance
        assert score < chance + 0.2, result.metrics["test"]
