"""A static target is hidden from both model families, in training and in prediction: end-to-end leak tests.

A synthetic shop of 2,000 users (timed by their signup) and 6,000 orders goes through the real data path
(Dagster: tables, graph store, feature store, training tables); then `train_query_model`, what every HPO
trial, model asset and refit runs, trains each family. The users carry

- ``flag``: a fair coin per user, independent of everything else in the database, and
- ``tier``: ``high`` exactly when the user's ``points`` > 0.

``PREDICT users.flag FOR EACH users.user_id`` is a static target: its training table lists ``users.flag`` in
``masked_input_columns``. Before masking, both families read the flag from the user's own row: validation
AUROC 1.0 for the GBDT and for the GNN (checked by hand on this database). Masked, nothing left in the
database says anything about a coin flip, so a model's validation scores are independent of the validation
labels, and AUROC is the Mann-Whitney statistic under its null: mean 0.5, variance (n+ + n- + 1) /
(12 n+ n-). The tests allow 4 standard deviations (two-sided p ~ 6e-5; about 0.16 with 200 validation users).
``tier`` is the positive control: masking ``users.tier`` must leave ``points``, so both families still
predict it far above chance. And predictions served for the validation rows equal the scores training
recorded for them: serving hides the same column (a GNN served with the real flag would score differently).
"""

from __future__ import annotations

import datetime as dt
import math
import textwrap

import numpy as np
import polars as pl
import pytest
from dagster import instance_for_test, materialize

from kumo_assets.definitions import build_definitions, plain_resources
from models.blending import scored_rows_from_bytes
from models.metrics import compute_metrics
from relational.pql.queries import load_queries
from relational.spec_loader import load_spec
from serving.daily import open_scoring_data
from serving.predict import resolve_rows, write_predictions
from serving.served_model import ServedModel, load_member
from tests.support.fake_db import data_assets
from training.run import ModelRunConfig, train_query_model

pytestmark = pytest.mark.integration

USERS, ORDERS = 2_000, 6_000
SPEC = """\
tables:
  users:
    source: users.parquet
    primary_key: user_id
    time_column: signup
    stypes: {flag: categorical, tier: categorical}
  orders:
    source: orders.parquet
    primary_key: order_id
    time_column: created_at
    foreign_keys: {user_id: users}
"""
QUERIES = """\
flag: PREDICT users.flag FOR EACH users.user_id
tier: PREDICT users.tier FOR EACH users.user_id
"""
CONFIGS = {
    "gbdt": ModelRunConfig(family="gbdt", gbdt_trees=100, gbdt_leaves=7),
    "gnn": ModelRunConfig(family="gnn", channels=16, epochs=3, batch_size=128, fanouts=[4, 2], device="cpu"),
}


def write_database(root) -> None:
    rng = np.random.default_rng(0)
    start = dt.datetime(2024, 1, 1)

    def times(count: int) -> list[dt.datetime]:
        return [start + dt.timedelta(minutes=int(m)) for m in np.sort(rng.integers(0, 60 * 24 * 180, count))]

    points = rng.normal(0.0, 1.0, USERS)
    users = pl.DataFrame({"user_id": np.arange(USERS), "flag": rng.choice(["no", "yes"], USERS),
                          "points": points, "tier": np.where(points > 0, "high", "low"),
                          "score": rng.normal(0.0, 1.0, USERS), "signup": times(USERS)})  # fmt: skip
    orders = pl.DataFrame({"order_id": np.arange(ORDERS), "user_id": rng.integers(0, USERS, ORDERS),
                           "amount": rng.gamma(2.0, 20.0, ORDERS).round(2), "created_at": times(ORDERS)})  # fmt: skip
    root.mkdir(parents=True)
    users.write_parquet(root / "users.parquet")
    orders.write_parquet(root / "orders.parquet")
    (root / "graph.yaml").write_text(textwrap.dedent(SPEC))
    (root / "queries.yaml").write_text(QUERIES)


@pytest.fixture(scope="module", name="shop")
def shop_fixture(tmp_path_factory):
    """The database through the data assets, and one run of each family for each query."""
    tmp_path = tmp_path_factory.mktemp("static")
    write_database(tmp_path / "shop")
    defs = build_definitions([tmp_path / "shop" / "graph.yaml"], str(tmp_path / "plane"), None, "hashing")
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        assert materialize(data_assets(defs), resources=defs.resources, instance=instance).success
    resources = plain_resources(defs)
    stores = resources["data_plane"], resources["graph_store"], resources["feature_store"]
    spec = load_spec(tmp_path / "shop" / "graph.yaml")
    queries = load_queries(tmp_path / "shop" / "queries.yaml")
    runs = {(name, family): train_query_model(spec, queries[name], config, *stores, log=lambda *_: None)
            for name in queries for family, config in CONFIGS.items()}  # fmt: skip
    return spec, queries, stores, runs


def scored_validation(shop, query: str, family: str):
    spec, _, (plane, _, _), runs = shop
    run = runs[(query, family)]
    payload = plane.get_bytes(spec.graph_name, "models", query, run.run_key, "scored.npz")
    return run, scored_rows_from_bytes(payload)["val"]


def auroc_and_bound(shop, query: str, family: str) -> tuple[float, float]:
    """The validation AUROC of the second class (``yes`` / ``low``) and 4 standard deviations of its null."""
    _, scored = scored_validation(shop, query, family)
    labels = np.asarray(scored.labels).astype(np.int64)
    outputs = np.asarray(scored.outputs, dtype=np.float64).reshape(len(labels), -1)
    positive = outputs[:, -1]  # two classes are binary: the probability of 1
    auroc = compute_metrics("binary_classification", labels == 1, positive)["auroc"]
    n_pos, n_neg = int((labels == 1).sum()), int((labels == 0).sum())
    assert n_pos + n_neg == len(labels) and min(n_pos, n_neg) > 50, "two classes with enough rows of each"
    return auroc, 4 * math.sqrt((n_pos + n_neg + 1) / (12 * n_pos * n_neg))


def stored_summary(shop, query: str, family: str) -> dict:
    spec, _, (plane, _, _), runs = shop
    return plane.get_json(spec.graph_name, "models", query, runs[(query, family)].run_key, "summary.json")


def test_the_static_targets_training_tables_list_their_column_as_masked(shop):
    spec, _, (plane, _, _), _ = shop
    for query in ("flag", "tier"):
        meta = plane.get_json(spec.graph_name, "training_tables", f"{query}.json")
        assert meta["masked_input_columns"] == [f"users.{query}"]


@pytest.mark.parametrize("family", ["gbdt", "gnn"])
def test_a_coin_flip_static_target_is_not_copied_from_the_inputs(shop, family):
    auroc, bound = auroc_and_bound(shop, "flag", family)
    assert abs(auroc - 0.5) < bound, f"{family} validation AUROC {auroc:.3f} is outside 0.5 +- {bound:.3f}"
    assert stored_summary(shop, "flag", family)["masked_input_columns"] == ["users.flag"]


def test_the_gbdt_builds_no_feature_from_the_masked_column_and_keeps_the_others(shop):
    spec, _, (plane, _, _), runs = shop
    names = {query: load_member(plane, spec.graph_name, query, "gbdt", runs[(query, "gbdt")].run_key).model.feature_names
             for query in ("flag", "tier")}  # fmt: skip
    assert not [name for name in names["flag"] if "users.flag" in name]
    assert not [name for name in names["tier"] if "users.tier" in name]
    assert "users.points" in names["flag"] and "users.flag.code" in names["tier"]  # each other's target stays


@pytest.mark.parametrize("family", ["gbdt", "gnn"])
def test_masking_hides_only_the_target_a_learnable_one_is_still_learnt(shop, family):
    """``tier`` (points > 0) is masked too, but ``points`` is not: both families still learn it."""
    auroc, bound = auroc_and_bound(shop, "tier", family)
    assert auroc > 0.5 + bound and auroc > 0.9, f"{family} validation AUROC {auroc:.3f} on a learnable target"


@pytest.mark.parametrize("family", ["gbdt", "gnn"])
def test_served_predictions_hide_the_target_as_training_did(shop, family):
    """The validation rows served through `serving.predict` score exactly as training recorded them, so
    prediction hides the masked column as training did (a GNN reading the real flag would not)."""
    spec, _, (plane, graphs, features), _ = shop
    run, scored = scored_validation(shop, "flag", family)
    member = load_member(plane, spec.graph_name, "flag", family, run.run_key)
    assert member.masked == {"users": ("flag",)}
    served = ServedModel(spec.graph_name, "flag", run.task_type, [member], False, None, None)
    data = open_scoring_data(spec, plane, graphs, features)
    table = plane.get_frame(spec.graph_name, "training_tables", "flag.parquet")
    rows, skipped = resolve_rows(table.filter(pl.col("split") == "val").select("entity", "anchor_time"), data,
                                 "users")  # fmt: skip
    assert skipped.height == 0
    published = {}

    def publish(path) -> str:
        published["frame"] = pl.read_parquet(path)
        return str(path)

    write_predictions(served, data, rows, publish, "users", chunk_rows=64)
    frame, outputs = published["frame"], np.asarray(scored.outputs, dtype=np.float64)
    assert run.task_type == "binary_classification"  # two classes ('no'/'yes') are a binary task
    np.testing.assert_allclose(frame["probability"].to_numpy(), outputs, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("family", ["gbdt", "gnn"])
def test_an_entity_without_a_time_is_seen_at_the_last_event_and_trains(tmp_path, family):
    """Users without a time column: each row's anchor is the database's last event (before, it was null and
    both families failed on it), and both families train on it and still learn ``tier``."""
    write_database(tmp_path / "shop")
    spec_path = tmp_path / "shop" / "graph.yaml"
    spec_path.write_text(spec_path.read_text().replace("    time_column: signup\n", "", 1))
    (tmp_path / "shop" / "queries.yaml").write_text("tier: PREDICT users.tier FOR EACH users.user_id\n")
    defs = build_definitions([spec_path], str(tmp_path / "plane"), None, "hashing")
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert materialize(data_assets(defs), resources=defs.resources, instance=instance).success
    resources = plain_resources(defs)
    stores = resources["data_plane"], resources["graph_store"], resources["feature_store"]
    spec = load_spec(spec_path)
    table = stores[0].get_frame(spec.graph_name, "training_tables", "tier.parquet")
    last_order = pl.read_parquet(tmp_path / "shop" / "orders.parquet")["created_at"].max()
    assert table["anchor_time"].unique().to_list() == [int(last_order.replace(tzinfo=dt.UTC).timestamp())]
    run = train_query_model(spec, load_queries(tmp_path / "shop" / "queries.yaml")["tier"], CONFIGS[family],
                            *stores, log=lambda *_: None)  # fmt: skip
    assert run.metrics["val"]["auroc"] > 0.9
