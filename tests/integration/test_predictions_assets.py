"""The predictions and embeddings assets through Dagster on the fake shop: binary, regression with an
entity-level WHERE, and link prediction, each from a real one-trial study and its best_model."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest
import torch
from dagster import AssetKey, instance_for_test, materialize

from kumo_assets.asset_keys import stage_of
from relational.pql.errors import LeakageError
from serving.scoring import _check_no_future
from tests.integration.test_model_assets import shop_definitions
from tests.support.fake_db import make_tables

QUERIES = """\
big_spender:
  query: PREDICT SUM(orders.amount, 0, 14, days) > 60 FOR EACH users.user_id
  anchors: {timestamps: {train: [2024-02-01, 2024-03-01], val: [2024-04-01], test: [2024-05-01]}}
spend: "PREDICT SUM(orders.amount, 0, 30) FOR EACH users.user_id WHERE COUNT(orders.*, -30, 0) > 0"
next_products: "PREDICT LIST_DISTINCT(orders.product_id, 0, 30, days) RANK TOP 5 FOR EACH users.user_id"
"""
TINY = {"mode": "fast", "n_trials": 1, "parallelism": 1, "families": ["gnn"], "device": "cpu",
        "space": {"max_steps_per_epoch": 3, "epochs": [1, 1], "channels": [8, 8]}}  # fmt: skip
GBDT_ONLY = {"mode": "fast", "n_trials": 1, "parallelism": 1, "families": ["gbdt"],
             "space": {"gbdt_trees": [30, 30], "gbdt_leaves": [7, 7]}}  # fmt: skip
DAYS = ["2024-05-10", "2024-06-01"]


@pytest.fixture(scope="module", name="shop")
def shop_fixture(tmp_path_factory):
    """Every query's study and best_model, then two partitions of each query's predictions and embeddings."""
    tmp_path = tmp_path_factory.mktemp("serving")
    defs = shop_definitions(tmp_path, QUERIES)
    unpartitioned = [a for a in defs.assets if stage_of(a.key) not in {"model", "predictions", "embeddings"}]
    studies = {"big_spender": GBDT_ONLY, "spend": TINY, "next_products": TINY}  # big_spender: a GBDT serves
    config = {"ops": {f"shop__{name}__study": {"config": study} for name, study in studies.items()}}
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        assert materialize(
            unpartitioned, resources=defs.resources, instance=instance, run_config=config
        ).success
        for name, study in studies.items():
            kinds = ("predictions",) if study is GBDT_ONLY else ("predictions", "embeddings")
            serving = [a for a in defs.assets if a.key.path[1:] in [[name, kind] for kind in kinds]]
            for day in DAYS:
                assert materialize(
                    serving, resources=defs.resources, instance=instance, partition_key=day
                ).success
        gbdt_embeddings = [a for a in defs.assets if a.key == AssetKey(["shop", "big_spender", "embeddings"])]
        refused = materialize(gbdt_embeddings, resources=defs.resources, instance=instance, partition_key=DAYS[0],
                              raise_on_error=False)  # fmt: skip
        assert not refused.success
        failure = next(event for event in refused.all_events if event.is_step_failure)
        assert (
            "trained no GNN" in failure.step_failure_data.error.to_string()
        )  # the ServingError, with its fix
        metadata = instance.get_latest_materialization_event(
            AssetKey(["shop", "spend", "predictions"])
        ).asset_materialization.metadata  # fmt: skip
    return tmp_path / "plane" / "shop", metadata


def read(plane, kind: str, name: str, day: str) -> pl.DataFrame:
    return pl.read_parquet(plane / kind / name / f"{day}.parquet")


def active_users(day: str) -> set[int]:
    """Users with an order in the 30 days up to the anchor, from the raw tables (the WHERE, independently)."""
    anchor = dt.datetime.fromisoformat(day)
    tables = make_tables()
    orders = tables["orders"].with_columns(pl.col("created_at").str.to_datetime(strict=False))
    window = orders.filter(
        (pl.col("created_at") > anchor - dt.timedelta(days=30)) & (pl.col("created_at") <= anchor)
    )
    return set(window["user_id"].drop_nulls().to_list()) & set(tables["users"]["user_id"].to_list())


@pytest.mark.parametrize("day", DAYS)
def test_partitions_score_what_the_query_selects_at_their_anchor(shop, day):
    plane, _ = shop
    anchor = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
    everyone = set(make_tables()["users"]["user_id"].to_list())
    binary, regression = (
        read(plane, "predictions", "big_spender", day),
        read(plane, "predictions", "spend", day),
    )
    assert set(binary["entity"].to_list()) == everyone and binary["entity"].is_unique().all()
    assert set(regression["entity"].to_list()) == active_users(day) != everyone  # FOR EACH ... WHERE
    for frame in (binary, regression):
        assert frame["anchor_time"].unique().to_list() == [anchor]
    assert binary.columns[2:5] == ["probability", "score", "predicted_class"]
    assert regression.columns[2] == "value" and regression["value"].is_finite().all()


def test_a_gbdt_serves_with_its_feature_audit_and_input_drift(shop):
    plane, _ = shop
    frame = read(plane, "predictions", "big_spender", DAYS[0])
    assert frame["model_version"][0].startswith("gbdt:") and frame["probability"].is_between(0, 1).all()
    health = json.loads((plane / "predictions" / "big_spender" / "health" / f"{DAYS[0]}.json").read_text())
    assert health["audit"]["gbdt_features"]["passed"] is True and health["audit"]["gbdt_features"]["rows"] > 0
    assert health["input_psi"]  # the GBDT's most important features, on served and validation rows


def test_link_predictions_list_the_top_k_target_keys_with_scores(shop):
    plane, _ = shop
    frame = read(plane, "predictions", "next_products", DAYS[0])
    products = set(make_tables()["products"]["product_id"].to_list())
    assert frame.columns[2:4] == ["targets", "scores"]
    assert frame["targets"].list.len().to_list() == [5] * frame.height
    assert all(set(targets) <= products for targets in frame["targets"].to_list())
    for scores in frame["scores"].to_list():
        assert scores == sorted(scores, reverse=True)


def test_embeddings_are_fixed_size_float32_vectors_per_entity(shop):
    plane, _ = shop
    predictions, embeddings = (read(plane, kind, "spend", DAYS[1]) for kind in ("predictions", "embeddings"))
    assert embeddings.schema["embedding"] == pl.Array(pl.Float32, 8)
    assert embeddings["entity"].to_list() == predictions["entity"].to_list()
    assert embeddings["model_version"][0] == predictions["model_version"][0]


def test_metadata_shows_the_anchor_counts_and_versions(shop):
    _, metadata = shop
    assert metadata["entities_selected"].value == metadata["dagster/row_count"].value > 0
    assert metadata["entities_not_scored"].value == 0
    assert metadata["model_version"].value.startswith("gnn:")
    preview = metadata["highest_scored"].value  # the ten highest predicted spends, highest first
    values = [record.data["value"] for record in preview.records]
    assert len(values) == min(10, metadata["dagster/row_count"].value) and values == sorted(
        values, reverse=True
    )


def test_a_sampled_neighbour_later_than_its_anchor_fails_the_audit():
    """The audit every scored batch passes, on a batch with one neighbour a second after its seed's anchor."""
    from torch_geometric.data import HeteroData

    batch = HeteroData()
    batch["users"].seed_time = torch.tensor([100, 200])
    batch["orders"].time = torch.tensor([90, 200, 101])
    batch["orders"].batch = torch.tensor([0, 1, 0])
    with pytest.raises(LeakageError, match="1 sampled orders node"):
        _check_no_future(batch, "users")
    batch["orders"].time = torch.tensor([90, 200, 100])
    assert _check_no_future(batch, "users") == 3
