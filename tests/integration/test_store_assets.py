"""The store assets on the fake shop: the graph store's and the feature store's Dagster assets, their metadata,
and that the two stores agree on every node type."""

from __future__ import annotations

import numpy as np
from dagster import AssetKey, instance_for_test, materialize

from kumo_assets.definitions import build_definitions, plain_resources
from stores.graph_store import open_graph_store
from tests.support.fake_db import data_assets, write_fake_db

__all__ = ["test_graph_store_asset_on_the_fake_shop"]


def test_graph_store_asset_on_the_fake_shop(tmp_path):
    spec_path = write_fake_db(tmp_path / "shop")
    defs = build_definitions([spec_path], str(tmp_path / "plane"))
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert materialize(data_assets(defs), resources=defs.resources, instance=instance).success
        metadata = instance.get_latest_materialization_event(
            AssetKey(["shop", "graph_store"])
        ).asset_materialization.metadata
    graph = plain_resources(defs)["graph_store"].open("shop")
    assert metadata["version"].value == graph.version
    orders = graph.node_counts["orders"]
    # one order has no time (dropped at ingest); one has a null and one a dangling user: no edge
    assert graph.csc[("orders", "user_id", "users")][1].shape[0] == orders - 2
    assert graph.csc[("orders", "product_id", "products")][1].shape[0] == orders
    edges = {record.data["edge type"]: record.data for record in metadata["edges"].value.records}
    assert edges["orders/user_id/users"]["edges"] > 0 and metadata["size"].value.endswith("KiB")
    keys = plain_resources(defs)["graph_store"].node_keys(graph, "users")
    assert keys.columns == ["user_id"] and keys.height == graph.node_counts["users"]


def test_feature_store_asset_matches_the_graph_store(tmp_path):
    spec_path = write_fake_db(tmp_path / "shop")
    defs = build_definitions([spec_path], str(tmp_path / "plane"))
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert materialize(data_assets(defs), resources=defs.resources, instance=instance).success
        event = instance.get_latest_materialization_event(AssetKey(["shop", "feature_store"]))
    node_types = event.asset_materialization.metadata["node_types"].value.records
    assert "users" in {record.data["node type"] for record in node_types}
    features = plain_resources(defs)["feature_store"].open("shop")
    graph = open_graph_store(plain_resources(defs)["graph_store"].directory("shop"))
    assert features.schema["node_types"]["orders"]["rows"] == graph.node_counts["orders"]
    users = np.asarray(features.blocks[("users", "numerical")])
    assert users.shape[0] == graph.node_counts["users"]
