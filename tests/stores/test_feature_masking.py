"""Masked input columns in the GNN's features: a static target's column reads as 0 for the query that hides it.

The feature store is shared by every query of a graph, so a query's ``masked_input_columns`` are applied at
read time (`StoredFeatures.with_masked`): two stores that differ only in the masked columns must give the same
fetched batches and the same encoder outputs, while without the mask they differ.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from models.gnn import GNNConfig, RelationalGNN
from models.heads import TaskSpec
from models.trainer import seed_everything
from stores.feature_store import (
    PARALLEL_GATHER_ROWS,
    FeatureStoreError,
    NodeTable,
    build_feature_store,
    open_feature_store,
)
from stores.fetcher import MinibatchFetcher, TrainingSplit, decode_batch
from stores.sampler import SamplerConfig
from tests.support.sampler_reference import random_store

USERS, EVENTS = 30, 400
STYPES = {"age": {"stype": "numerical"}, "country": {"stype": "categorical"}, "score": {"stype": "numerical"}}
MASK = {"users": ["age", "country"]}


def users_frame(seed: int) -> pl.DataFrame:
    """Users whose age and country are drawn from ``seed``; their score is the same whatever the seed."""
    rng = np.random.default_rng(seed)
    return pl.DataFrame({"age": rng.normal(40, 10, USERS), "country": rng.choice(["de", "fr", "us"], USERS),
                         "score": np.linspace(-1.0, 1.0, USERS)})  # fmt: skip


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """One graph, and two feature stores that differ only in the users' age and country."""
    graph = random_store(np.random.default_rng(0), USERS, 10, EVENTS, user_times=False)
    rng = np.random.default_rng(1)
    events = NodeTable(
        pl.DataFrame({"amount": rng.gamma(2.0, size=EVENTS)}), {"amount": {"stype": "numerical"}}
    )
    features = []
    for seed in (2, 3):
        root = tmp_path_factory.mktemp(f"features{seed}")
        build_feature_store(root, {"users": NodeTable(users_frame(seed), STYPES), "events": events})
        features.append(open_feature_store(root))
    split = TrainingSplit("shop/static/train@test", "users", np.arange(USERS), np.full(USERS, 45),
                          rng.integers(0, 2, USERS))  # fmt: skip
    return graph, features, split


def batches(graph, features, split) -> list[dict]:
    fetcher = MinibatchFetcher(graph, features, SamplerConfig((4, 4)), 8, prefetch=0)
    return [
        fetcher.content(split, 0, index, shuffle=False) for index in range(fetcher.batches_per_epoch(split))
    ]


def blocks(content: list[dict], node_type: str) -> dict[str, np.ndarray]:
    names = [name for name in ("numerical", "categorical") if name in content[0]["nodes"][node_type]]
    return {
        name: np.concatenate([batch["nodes"][node_type][name].numpy() for batch in content]) for name in names
    }


def hidden_columns(features, block: str) -> list[int]:
    columns = features.schema["node_types"]["users"]["columns"]
    return [offset for c in columns if c["column"] in MASK["users"] and c["block"] == block
            for offset in range(c["offset"], c["offset"] + c["width"])]  # fmt: skip


def test_fetched_features_do_not_depend_on_masked_columns(stores):
    graph, (first, second), split = stores
    plain = [blocks(batches(graph, features, split), "users") for features in (first, second)]
    assert not np.array_equal(plain[0]["numerical"], plain[1]["numerical"])  # age differs: this can fail
    assert not np.array_equal(plain[0]["categorical"], plain[1]["categorical"])  # so does country
    masked = [
        blocks(batches(graph, features.with_masked(MASK), split), "users") for features in (first, second)
    ]
    for block in ("numerical", "categorical"):
        np.testing.assert_array_equal(masked[0][block], masked[1][block])
        hidden = hidden_columns(first, block)
        assert hidden and not masked[0][block][:, hidden].any()  # read as 0 (categorical: the null code)
        kept = np.setdiff1d(np.arange(plain[0][block].shape[1]), hidden)
        np.testing.assert_array_equal(
            masked[0][block][:, kept], plain[0][block][:, kept]
        )  # the rest as stored
    events = [
        blocks(batches(graph, features.with_masked(MASK), split), "events") for features in (first, second)
    ]
    np.testing.assert_array_equal(
        events[0]["numerical"], blocks(batches(graph, first, split), "events")["numerical"]
    )


def test_encoded_features_do_not_depend_on_masked_columns(stores):
    """The GNN's node encoder (and the whole forward pass) gives the same outputs for both stores once masked."""
    graph, (first, second), split = stores
    spec = TaskSpec.from_labels("binary_classification", split.labels)

    def outputs(features) -> list[torch.Tensor]:
        seed_everything(0)
        model = RelationalGNN(list(graph.node_counts), graph.edge_types, first.schema["node_types"], "users", spec,
                              GNNConfig(channels=8), graph.node_counts).eval()  # fmt: skip
        with torch.no_grad():
            return [torch.cat([model.encoder(batch)["users"].flatten(), model(batch)[0].flatten()])
                    for batch in map(decode_batch, batches(graph, features, split))]  # fmt: skip

    plain = [outputs(features) for features in (first, second)]
    assert any(not torch.equal(a, b) for a, b in zip(*plain, strict=True))
    masked = [outputs(features.with_masked(MASK)) for features in (first, second)]
    for a, b in zip(*masked, strict=True):
        assert torch.equal(a, b)


def test_gather_zeroes_hidden_columns_on_both_gather_paths(stores):
    _, (first, _), _ = stores
    masked = first.with_masked(MASK)
    hidden = hidden_columns(first, "numerical")
    for count in (5, PARALLEL_GATHER_ROWS + 5):  # np.take, and numba's parallel copy
        ids = np.random.default_rng(count).integers(0, USERS, count)
        rows = masked.gather("users", "numerical", ids)
        assert not rows[:, hidden].any()
        np.testing.assert_array_equal(np.delete(rows, hidden, axis=1),
                                      np.delete(np.asarray(first.blocks[("users", "numerical")])[ids], hidden, axis=1))  # fmt: skip
    assert np.asarray(first.blocks[("users", "numerical")])[:, hidden[0]].any()  # the store itself is intact


def test_masked_batches_are_cached_apart_and_unknown_tables_are_refused(stores):
    graph, (first, _), split = stores
    sampling = SamplerConfig((4, 4))
    plain = MinibatchFetcher(graph, first, sampling, 8).key(split, 0, 0)
    masked = MinibatchFetcher(graph, first.with_masked(MASK), sampling, 8).key(split, 0, 0)
    assert plain != masked and "masked=users.age,users.country" in masked
    assert first.with_masked({}).hidden == {} and MinibatchFetcher(graph, first.with_masked({}), sampling, 8).key(
        split, 0, 0) == plain  # fmt: skip
    with pytest.raises(FeatureStoreError, match="'customers', which is no node type"):
        first.with_masked({"customers": ["age"]})
