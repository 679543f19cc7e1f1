"""Train/serve skew: the predictions path scores validation rows exactly as the training path recorded them.

Real models (a GNN and a GBDT trained by `train_query_model` on the fake shop) are served alone and as a
blend through `serving.predict`, on the validation (entity, anchor) rows of their training table, and the
served scores must equal the validation outputs each run stored in its ``scored.npz``.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from dagster import instance_for_test, materialize

from kumo_assets.definitions import plain_resources
from models.blending import blend_outputs, scored_rows_from_bytes
from relational.pql.queries import load_queries
from serving.daily import open_scoring_data
from serving.predict import resolve_rows, write_predictions
from serving.served_model import ServedModel, load_member
from tests.integration.test_model_assets import shop_definitions
from tests.support.hpo_helpers import study_inputs
from training.link_trial import link_query
from training.run import ModelRunConfig, train_query_model

GNN = ModelRunConfig(family="gnn", channels=16, epochs=2, max_steps_per_epoch=4, device="cpu", batch_size=16)
GBDT = ModelRunConfig(family="gbdt", gbdt_trees=40, gbdt_leaves=7)


@pytest.fixture(scope="module", name="shop")
def shop_fixture(tmp_path_factory):
    """The shop's tables, stores and training tables, and one trained run of each family for big_spender."""
    tmp_path = tmp_path_factory.mktemp("skew")
    defs = shop_definitions(tmp_path)
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        assert materialize(study_inputs(defs), resources=defs.resources, instance=instance).success
    resources = plain_resources(defs)
    spec_path = tmp_path / "shop" / "graph.yaml"
    from relational.spec_loader import load_spec

    spec = load_spec(spec_path)
    query = load_queries(spec_path.parent / "queries.yaml")["big_spender"]
    plane, graphs, features = resources["data_plane"], resources["graph_store"], resources["feature_store"]
    runs = {config.family: train_query_model(spec, query, config, plane, graphs, features, log=lambda _: None)
            for config in (GNN, GBDT)}  # fmt: skip
    return spec, query, plane, graphs, features, runs


def keeping(published: dict):
    """A publish step that keeps the written frame in ``published["frame"]`` (the test reads it back)."""

    def publish(path) -> str:
        published["frame"] = pl.read_parquet(path)
        return str(path)

    return publish


def served_scores(shop, families: list[str], chunk_rows: int) -> tuple[pl.DataFrame, list]:
    """Serve the runs of ``families`` (a blend when two) on the validation rows; return the output and the
    runs' stored validation rows."""
    spec, query, plane, graphs, features, runs = shop
    members = [
        load_member(plane, spec.graph_name, query.name, family, runs[family].run_key) for family in families
    ]
    served = ServedModel(spec.graph_name, query.name, "binary_classification", members, len(members) > 1,
                         None, None)  # fmt: skip
    data = open_scoring_data(spec, plane, graphs, features)
    table = plane.get_frame(spec.graph_name, "training_tables", f"{query.name}.parquet")
    rows, skipped = resolve_rows(
        table.filter(pl.col("split") == "val").select("entity", "anchor_time"), data, "users"
    )
    assert skipped.height == 0
    published = {}
    run = write_predictions(served, data, rows, keeping(published), "users", chunk_rows=chunk_rows)
    stored = [scored_rows_from_bytes(plane.get_bytes(spec.graph_name, "models", query.name, runs[f].run_key,
                                                     "scored.npz"))["val"] for f in families]  # fmt: skip
    assert run.rows == rows.height == len(stored[0].outputs)
    return published["frame"], stored


@pytest.mark.parametrize("family", ["gnn", "gbdt"])
@pytest.mark.parametrize("chunk_rows", [7, 65_536])
def test_served_scores_equal_the_scores_training_recorded_for_the_same_validation_rows(
    shop, family, chunk_rows
):
    frame, (stored,) = served_scores(shop, [family], chunk_rows)
    np.testing.assert_allclose(frame["probability"].to_numpy(), stored.outputs, rtol=1e-6, atol=1e-7)
    assert frame["score"].equals(frame["probability"])
    assert frame["model_version"].unique().to_list() == [f"{family}:{shop[5][family].run_key}"]


def test_a_served_blend_equals_the_blend_validation_chose(shop):
    frame, stored = served_scores(shop, ["gnn", "gbdt"], 11)
    expected = blend_outputs(
        "binary_classification", [rows.outputs for rows in stored]
    )  # the study's rank blend
    np.testing.assert_allclose(frame["score"].to_numpy(), expected, rtol=1e-9)
    np.testing.assert_allclose(frame["probability"].to_numpy(), np.mean([r.outputs for r in stored], axis=0),
                               rtol=1e-6)  # fmt: skip
    assert frame["model_version"][0].startswith("gnn:") and "+gbdt:" in frame["model_version"][0]


LINK_QUERIES = """\
next_products:
  query: PREDICT LIST_DISTINCT(orders.product_id, 0, 30, days) RANK TOP 3 FOR EACH users.user_id
  anchors: {timestamps: {train: [2024-02-01, 2024-03-01], val: [2024-04-01, 2024-04-15], test: [2024-05-15]}}
"""


@pytest.fixture(scope="module", name="links")
def links_fixture(tmp_path_factory):
    """The shop's link query, its tables and stores, and one trained run of each family."""
    from relational.spec_loader import load_spec
    from tests.support.fake_db import data_assets

    tmp_path = tmp_path_factory.mktemp("links")
    defs = shop_definitions(tmp_path, LINK_QUERIES)
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        assert materialize(data_assets(defs), resources=defs.resources, instance=instance).success
    spec = load_spec(tmp_path / "shop" / "graph.yaml")
    query = load_queries(tmp_path / "shop" / "queries.yaml")["next_products"]
    plane, graphs, features = (
        plain_resources(defs)[name] for name in ("data_plane", "graph_store", "feature_store")
    )
    runs = {config.family: train_query_model(spec, query, config, plane, graphs, features, log=lambda _: None)
            for config in (GNN, GBDT)}  # fmt: skip
    return spec, query, plane, graphs, features, runs


@pytest.mark.parametrize("family", ["gnn", "gbdt"])
def test_served_rankings_equal_the_rankings_training_recorded(links, family):
    """Link prediction: the same top-K targets, in order, as the run's validation; a GBDT ranker's candidates
    and pair features are rebuilt for the served rows alone (chunks of 5 rows)."""
    spec, query, plane, graphs, features, runs = links
    member = load_member(plane, spec.graph_name, query.name, family, runs[family].run_key)
    served = ServedModel(spec.graph_name, query.name, "link_prediction", [member], False, None, None,
                         link=link_query(plane.get_json(spec.graph_name, "training_tables", "next_products.json")["parsed"]))  # fmt: skip
    data = open_scoring_data(spec, plane, graphs, features)
    table = plane.get_frame(spec.graph_name, "training_tables", "next_products.parquet")
    rows, _ = resolve_rows(
        table.filter(pl.col("split") == "val").select("entity", "anchor_time"), data, "users"
    )
    published = {}
    write_predictions(served, data, rows, keeping(published), "users", chunk_rows=5)
    stored = scored_rows_from_bytes(plane.get_bytes(spec.graph_name, "models", query.name, runs[family].run_key,
                                                    "scored.npz"))["val"]  # fmt: skip
    if family == "gnn":
        keys = graphs.node_keys(data.graph, "products").to_series(0).to_list()
    else:
        keys = member.model.classes_
    expected = [[keys[target] for target in row if target >= 0] for row in stored.outputs.tolist()]
    assert published["frame"]["targets"].to_list() == expected
    assert all(len(targets) == 3 for targets in expected)
