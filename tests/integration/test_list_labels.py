"""List-valued labels: LIST_DISTINCT / multicategorical targets become multi-hot rows the heads train on."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch
from dagster import AssetKey, instance_for_test, materialize
from hypothesis import given, settings
from hypothesis import strategies as st

from models.checkpoints import from_bytes
from models.gbdt import GBDTModel
from stores.fetcher import TrainingSplit
from tests.integration.test_model_assets import shop_definitions
from tests.support.fake_db import data_assets
from training import list_labels
from training.list_labels import label_vocabulary, multi_hot_splits

QUERIES = """\
next_products: "PREDICT LIST_DISTINCT(orders.product_id, 0, 30, days) RANK TOP 5 FOR EACH users.user_id"
next_stores: "PREDICT LIST_DISTINCT(orders.store_id, 0, 30, days) CLASSIFY FOR EACH users.user_id"
"""


def _split(labels: list) -> TrainingSplit:
    n = len(labels)
    column = np.empty(n, dtype=object)
    column[:] = labels
    return TrainingSplit("t/train@x", "users", np.arange(n), np.zeros(n, dtype=np.int64), column)


def test_link_prediction_outputs_are_the_target_nodes_in_node_order():
    keys = pl.Series("product_id", ["p3", "p1", "p2"])  # node ids 0, 1, 2
    vocabulary = label_vocabulary("link_prediction", [["p1"]], keys)
    (train,) = multi_hot_splits({"train": _split([["p2", "p3"], [], None, ["p9", "p1"]])}, vocabulary,
                                log=lambda _: None).values()  # fmt: skip
    assert train.labels.tolist() == [[1, 0, 1], [0, 0, 0], [0, 0, 0], [0, 1, 0]]
    assert train.labels.dtype == np.uint8
    with pytest.raises(ValueError, match="target table's keys"):
        label_vocabulary("link_prediction", [["p1"]])


def test_categories_come_from_training_and_later_ones_are_reported():
    vocabulary = label_vocabulary("multilabel_classification", [["b", "a"], ["c"], None, []])
    assert vocabulary.values == ["a", "b", "c"]
    messages = []
    encoded = multi_hot_splits({"val": _split([["a", "z"], ["c", "c"]])}, vocabulary, log=messages.append)
    assert encoded["val"].labels.tolist() == [[1, 0, 0], [0, 0, 1]]
    assert messages and "1 listed value" in messages[0]
    with pytest.raises(ValueError, match="nothing to predict"):
        label_vocabulary("multilabel_classification", [[], None])


def test_too_many_outputs_are_refused_with_the_fix(monkeypatch):
    monkeypatch.setattr(list_labels, "MAX_MULTI_HOT_BYTES", 5)
    vocabulary = label_vocabulary("ranking", [["a", "b", "c"]])
    with pytest.raises(ValueError, match=r"t/train@x: 2 rows x 3 possible targets .* filter the entities"):
        multi_hot_splits({"train": _split([["a"], ["b"]])}, vocabulary)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.lists(st.integers(0, 9), max_size=6)), min_size=1, max_size=20))
def test_a_row_is_set_exactly_where_its_list_names_a_known_value(rows):
    train_part = rows[: max(1, len(rows) // 2)]
    if not any(row for row in train_part):
        train_part = [*train_part, [0]]
    vocabulary = label_vocabulary("multilabel_classification", train_part)
    encoded = multi_hot_splits({"test": _split(rows)}, vocabulary, log=lambda _: None)["test"].labels
    for listed, hot in zip(rows, encoded, strict=True):
        assert {vocabulary.values[j] for j in np.flatnonzero(hot)} == set(listed or []) & set(
            vocabulary.values
        )


@pytest.mark.integration
def test_list_queries_train_end_to_end(tmp_path):
    defs = shop_definitions(tmp_path, QUERIES)
    config = {"family": "gnn", "epochs": 2, "device": "cpu", "max_steps_per_epoch": 4, "channels": 16}
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        assert materialize(data_assets(defs), resources=defs.resources, instance=instance).success
        for query in ("next_products", "next_stores"):
            model = [a for a in defs.assets if a.key == AssetKey(["shop", query, "model"])]
            run_config = {"ops": {f"shop__{query}__model": {"config": config}}}
            assert materialize(
                model, resources=defs.resources, instance=instance, run_config=run_config
            ).success

    plane = tmp_path / "plane" / "shop"
    products = pl.read_parquet(plane / "tables" / "products.parquet")
    (ranked,) = (plane / "models" / "next_products").iterdir()
    summary = json.loads((ranked / "summary.json").read_text())
    assert summary["task_type"] == "link_prediction"
    assert set(summary["metrics"]["val"]) == {"map@5", "recall@5", "precision@5", "ndcg@5"}  # the query's K
    artifact = from_bytes((ranked / "model.pt").read_bytes())
    assert artifact["spec"]["outputs"] == products.height == len(artifact["spec"]["classes"])
    assert artifact["spec"]["top_k"] == 5

    (classified,) = (plane / "models" / "next_stores").iterdir()
    summary = json.loads((classified / "summary.json").read_text())
    assert summary["task_type"] == "multilabel_classification"
    assert 0.0 <= summary["metrics"]["val"]["auprc"] <= 1.0
    artifact = from_bytes((classified / "model.pt").read_bytes())
    stores = artifact["spec"]["classes"]
    assert stores == sorted(stores) and artifact["spec"]["outputs"] == len(stores) > 1
    assert all(isinstance(value, torch.Tensor) for value in artifact["state_dict"].values())


@pytest.mark.integration
def test_gbdt_trains_a_classify_query_one_model_per_category(tmp_path):
    defs = shop_definitions(tmp_path, QUERIES)
    config = {"family": "gbdt", "gbdt_trees": 20}
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        assert materialize(data_assets(defs), resources=defs.resources, instance=instance).success
        model = [a for a in defs.assets if a.key == AssetKey(["shop", "next_stores", "model"])]
        run_config = {"ops": {"shop__next_stores__model": {"config": config}}}
        assert materialize(model, resources=defs.resources, instance=instance, run_config=run_config).success

    (trained,) = (tmp_path / "plane" / "shop" / "models" / "next_stores").iterdir()
    summary = json.loads((trained / "summary.json").read_text())
    assert summary["family"] == "gbdt" and summary["task_type"] == "multilabel_classification"
    assert set(summary["metrics"]["val"]) == {"auroc", "auprc", "f1", "accuracy"}
    model = GBDTModel.load(trained / "model.lgb")
    stores = model.classes_.tolist()
    assert stores == sorted(stores) and len(model.constants) == len(stores) > 1
    labels = pl.read_parquet(tmp_path / "plane" / "shop" / "training_tables" / "next_stores.parquet")
    seen = {
        store
        for listed in labels.filter(pl.col("split") == "train")["label"].to_list()
        for store in listed or []
    }
    assert set(stores) == seen
