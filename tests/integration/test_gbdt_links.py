"""Link prediction by the GBDT: candidates and pair features read only the past, and the pair scorer learns
repeat behaviour that popularity alone cannot rank."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from dagster import AssetKey, instance_for_test, materialize
from hypothesis import given, settings
from hypothesis import strategies as st

from models.gbdt import GBDTConfig
from models.gbdt_links import LinkRanker, PairMatrix, _candidate_map
from models.link_candidates import CandidateConfig, LinkLog, candidate_pairs, link_log, popularity_order
from models.metrics import compute_metrics
from relational.keys import NODE_ID
from relational.pql.anchors import AnchorPlan
from relational.pql.training_table import build_training_table
from tests.integration.test_list_labels import QUERIES
from tests.integration.test_model_assets import shop_definitions
from tests.support.fake_db import data_assets
from tests.support.pql_helpers import in_memory_graph
from training import link_trial
from training.link_trial import link_query, run_gbdt_link_trial, subsample_training_negatives

DAY = 86_400
START = 1_704_067_200  # 2024-01-01
BASKETS_SPEC = """\
tables:
  users: {source: users.parquet, primary_key: user_id}
  products: {source: products.parquet, primary_key: product_id}
  orders:
    source: orders.parquet
    primary_key: order_id
    time_column: created_at
    foreign_keys: {user_id: users}
  items:
    source: items.parquet
    primary_key: item_id
    time_from: {foreign_key: order_id}
    foreign_keys: {order_id: orders, product_id: products}
"""
QUERY = "PREDICT LIST_DISTINCT(items.product_id, 0, 30, days) RANK TOP 5 FOR EACH users.user_id"
PLAN = AnchorPlan(timestamps={"train": [START + DAY * d for d in range(60, 271, 15)], "val": [START + DAY * 300],
                              "test": [START + DAY * 330]})  # fmt: skip


def write_baskets(root, n_users: int = 60, n_products: int = 40, seed: int = 0):
    """Users buy mostly their own 3 favourite products (reached only through orders -> items), otherwise
    a product drawn by a skewed global popularity."""
    rng = np.random.default_rng(seed)
    favourites = np.stack([rng.choice(n_products, 3, replace=False) for _ in range(n_users)])
    popularity = 1.0 / np.arange(1, n_products + 1)
    orders, items = [], []
    for user in range(n_users):
        for day in np.sort(rng.uniform(0, 390, rng.poisson(39))):
            order = len(orders)
            orders.append((order, user, START + int(day * DAY)))
            for _ in range(rng.integers(1, 3)):
                liked = rng.random() < 0.85
                product = (
                    rng.choice(favourites[user])
                    if liked
                    else rng.choice(n_products, p=popularity / popularity.sum())
                )
                items.append((len(items), order, f"P{product:03d}"))
    root.mkdir(parents=True, exist_ok=True)
    pl.DataFrame({"user_id": np.arange(n_users)}).write_parquet(root / "users.parquet")
    pl.DataFrame({"product_id": [f"P{p:03d}" for p in range(n_products)],
                  "price": rng.uniform(1, 50, n_products)}).write_parquet(root / "products.parquet")  # fmt: skip
    pl.DataFrame(orders, schema=["order_id", "user_id", "created_at"], orient="row").with_columns(
        pl.from_epoch("created_at")
    ).write_parquet(root / "orders.parquet")
    pl.DataFrame(items, schema=["item_id", "order_id", "product_id"], orient="row").write_parquet(
        root / "items.parquet"
    )
    (root / "graph.yaml").write_text(BASKETS_SPEC)
    return root / "graph.yaml"


@pytest.fixture(scope="module")
def baskets(tmp_path_factory):
    schema, tables = in_memory_graph(write_baskets(tmp_path_factory.mktemp("baskets")))
    built = build_training_table(QUERY, schema, tables, PLAN)
    return schema, tables, built


def test_links_follow_the_path_from_items_through_orders_to_users(baskets):
    schema, tables, _ = baskets
    log = link_log(tables, schema, "items", "product_id", ["order_id", "user_id"])
    items = tables["items"].join(tables["orders"].select(NODE_ID, pl.col("_kumo_fk__user_id").alias("user")),
                                 left_on="_kumo_fk__order_id", right_on=NODE_ID)  # fmt: skip
    expected = sorted(zip(items["user"].to_list(), items["_kumo_fk__product_id"].to_list(), strict=True))
    assert sorted(zip(log.entity.tolist(), log.target.tolist(), strict=True)) == expected
    assert np.all(np.diff(log.time) >= 0) and log.n_targets == tables["products"].height
    with pytest.raises(ValueError, match="items has no foreign key 'user_id'"):
        link_log(tables, schema, "items", "product_id", ["user_id"])
    with pytest.raises(ValueError, match="not a foreign key"):
        link_log(tables, schema, "orders", "created_at", ["user_id"])


def test_the_gbdt_ranks_repeat_purchases_far_above_popularity(baskets, tmp_path):
    schema, tables, built = baskets
    keys = tables["users"].select("user_id", NODE_ID)
    result = run_gbdt_link_trial(tables, schema, "users", keys, built.table, link_query(built.meta["parsed"]),
                                 GBDTConfig(n_estimators=60, threads=1), top_k=5)  # fmt: skip
    test = built.table.filter(pl.col("split") == "test")
    log = link_log(tables, schema, "items", "product_id", ["order_id", "user_id"])
    popular = popularity_order(log, int(test["anchor_time"][0]), CandidateConfig())[:5]
    product_ids = dict(zip(*tables["products"].select("product_id", NODE_ID).to_dict().values(), strict=True))
    truth = [np.array([product_ids[p] for p in listed]) for listed in test["label"].to_list()]
    baseline = compute_metrics("link_prediction", truth, np.tile(popular, (len(truth), 1)), k=5)["map@5"]
    assert result.metrics["test"]["candidate_recall"] > 0.9
    assert result.metrics["test"]["map@5"] > baseline + 0.25, (result.metrics["test"], baseline)
    assert set(result.metrics["val"]) == {"map@5", "recall@5", "precision@5", "ndcg@5", "candidate_recall"}

    path = tmp_path / "ranker.json"
    path.write_bytes(result.model.to_bytes())
    loaded = LinkRanker.load(path)
    assert loaded.top_k == 5 and loaded.classes_[product_ids["P007"]] == "P007"
    pairs = candidate_pairs(log, np.array([0, 1]), np.array([START + 300 * DAY] * 2), loaded.candidates)
    pairs = pairs.with_columns(label=pl.lit(0))
    for name in result.model.feature_names:  # entity and target columns absent here: NaN for both models
        if name not in pairs.columns:
            pairs = pairs.with_columns(pl.lit(None, pl.Float32).alias(name))
    fallback = np.arange(loaded.n_targets)
    assert np.array_equal(result.model.rank(pairs, 2, fallback), loaded.rank(pairs, 2, fallback))


def test_rankings_do_not_depend_on_how_many_pairs_are_widened_at_once(baskets, monkeypatch):
    """Training matrices and rankings are built from a bounded number of wide candidate pairs at a time; one
    row per chunk must train and rank exactly as the whole split at once, and no widened chunk may exceed
    the limit (or one row's pairs)."""
    built = baskets[2]
    whole = _link_trial(baskets, built.table)
    widened = []
    real_call = link_trial.PairWidener.__call__

    def counting(self, pairs, row_ids):
        wide = real_call(self, pairs, row_ids)
        widened.append((len(row_ids), wide.height))
        return wide

    monkeypatch.setattr(link_trial.PairWidener, "__call__", counting)
    monkeypatch.setattr(link_trial, "PAIRS_PER_CHUNK", 1)
    chunked = _link_trial(baskets, built.table)
    assert chunked.metrics == whole.metrics
    for split in ("val", "test"):
        assert np.array_equal(chunked.scored[split].outputs, whole.scored[split].outputs)
    table_rows = built.table.group_by("split").len().to_dict(as_series=False)
    scored_rows = (
        sum(table_rows["len"]) + table_rows["len"][table_rows["split"].index("val")]
    )  # val: fit + rank
    assert len(widened) > scored_rows / 2  # the training matrix too is filled a chunk at a time
    assert all(rows == 1 or pairs <= 1 for rows, pairs in widened)


def test_the_ranker_refuses_pairs_it_cannot_learn_from():
    def pairs(labels, names=("a",)):
        return PairMatrix(list(names), np.ones((len(labels), len(names)), np.float32), np.asarray(labels, float),
                          np.arange(len(labels)) // 2)  # fmt: skip

    with pytest.raises(ValueError, match="the train candidates hold no positive or no negative pair"):
        LinkRanker().fit(pairs([0, 0, 0, 0]), pairs([0, 1]))
    with pytest.raises(ValueError, match="the val candidates hold no positive"):
        LinkRanker().fit(pairs([0, 1, 0, 1]), pairs([]))
    with pytest.raises(ValueError, match="feature columns differ"):
        LinkRanker().fit(pairs([0, 1, 0, 1]), pairs([0, 1], ("b",)))


def _link_trial(baskets, table: pl.DataFrame, **views):
    schema, tables, built = baskets
    keys = tables["users"].select("user_id", NODE_ID)
    return run_gbdt_link_trial(tables, schema, "users", keys, table, link_query(built.meta["parsed"]),
                               GBDTConfig(n_estimators=30, threads=1), top_k=5, **views)  # fmt: skip


def test_frozen_views_rank_from_the_database_their_view_sees(baskets):
    """Validation frozen at its first anchor: with one validation anchor that view is the fresh one, so the
    metrics must be equal. With two, the later anchor's frozen rows see 30 fewer days; stale training views
    add training pairs as databases frozen a year earlier (day 85) showed them."""
    schema, tables, built = baskets
    one = _link_trial(baskets, built.table, freeze_validation=True)
    assert one.metrics["val"] == one.metrics["val_fresh"]

    two_anchors = build_training_table(QUERY, schema, tables, AnchorPlan(timestamps={
        "train": PLAN.timestamps["train"], "val": [START + DAY * 300, START + DAY * 315],
        "test": [START + DAY * 345]})).table  # fmt: skip
    fresh = _link_trial(baskets, two_anchors, observe_until=START + 450 * DAY)
    frozen = _link_trial(baskets, two_anchors, observe_until=START + 450 * DAY, freeze_validation=True,
                         simulate_staleness=True)  # fmt: skip
    assert frozen.metrics["val"] != frozen.metrics["val_fresh"]
    assert set(frozen.metrics["val"]) == set(frozen.metrics["val_fresh"]) == set(fresh.metrics["val"])
    assert frozen.train_rows > fresh.train_rows  # training anchors at days 90 and 105 also seen as of day 85
    assert "anchor_gap_days" in frozen.model.feature_names  # how stale a row's view is


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.floats(-5, 5), st.booleans()), min_size=1, max_size=30),
       st.integers(1, 4))  # fmt: skip
def test_the_early_stopping_map_equals_the_metric_on_ranked_candidates(candidates, k):
    pairs = sorted({(row, score): hit for row, score, hit in candidates}.items())
    rows = np.array([row for (row, _), _ in pairs])
    scores = np.array([score for (_, score), _ in pairs])
    labels = np.array([float(hit) for _, hit in pairs])
    name, value, higher = _candidate_map(rows, labels, k, "map")(scores, None)
    assert name == "map"
    truth, ranked = [], []
    for row in np.unique(rows):
        mine = np.flatnonzero(rows == row)
        order = mine[np.lexsort((-scores[mine],))]
        truth.append(order[labels[order] > 0])
        ranked.append(np.r_[order[:k], [-1] * (k - len(order[:k]))])  # pad with misses
    expected = compute_metrics("link_prediction", truth, np.array(ranked), k=k)["map@" + str(k)]
    assert higher and (value == pytest.approx(expected) if not np.isnan(expected) else value == 0.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 30), st.booleans()), max_size=80),
       st.integers(0, 4))  # fmt: skip
def test_training_rows_keep_every_positive_and_at_most_the_limit_of_negatives(candidates, limit):
    unique = {(row, target): hit for row, target, hit in candidates}
    pairs = pl.DataFrame([(row, target, int(hit)) for (row, target), hit in unique.items()],
                         schema={"row": pl.Int64, "target": pl.Int64, "label": pl.Int64}, orient="row")  # fmt: skip
    split_of_row = pl.Series(["train", "val", "train", "test", "train", "val"])
    kept = subsample_training_negatives(pairs, split_of_row, limit)
    assert kept.equals(subsample_training_negatives(pairs, split_of_row, limit))  # the same choice each run
    for row in range(6):
        mine, before = kept.filter(pl.col("row") == row), pairs.filter(pl.col("row") == row)
        if split_of_row[row] != "train":
            assert mine.sort("target").equals(before.sort("target"))
            continue
        assert mine["label"].sum() == before["label"].sum()
        assert (mine["label"] == 0).sum() == min(limit, (before["label"] == 0).sum())


def _random_log(draw_links, n_targets: int) -> LinkLog:
    links = sorted(draw_links, key=lambda link: link[2])
    entity, target, time = (np.array([link[i] for link in links], dtype=np.int64) for i in range(3))
    return LinkLog(entity, target, time * DAY, n_targets)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5), st.integers(0, 100)), max_size=40),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 110)), min_size=1, max_size=6),
)
def test_candidate_features_count_exactly_the_links_at_or_before_as_of(links, queries):
    log = _random_log(links, n_targets=6)
    config = CandidateConfig(history_limit=100, popular_limit=2, windows_days=(7, 30, None))
    entity = np.array([q[0] for q in queries])
    as_of = np.array([q[1] for q in queries], dtype=np.int64) * DAY
    pairs = candidate_pairs(log, entity, as_of, config)
    seen = {(row, target): values for row, target, *values in pairs.select(
        "row", "target", "link_count_all", "link_count_7d", "link_count_30d", "popularity_all").iter_rows()}  # fmt: skip
    for row, (who, moment) in enumerate(zip(entity, as_of, strict=True)):
        past = [(e, t, s) for e, t, s in zip(log.entity, log.target, log.time, strict=True) if s <= moment]
        for target in range(6):
            mine = [s for e, t, s in past if e == who and t == target]
            if mine:  # every past link is a candidate, with its exact window counts
                assert seen[(row, target)][:3] == [len(mine), sum(s > moment - 7 * DAY for s in mine),
                                                    sum(s > moment - 30 * DAY for s in mine)]  # fmt: skip
            if (row, target) in seen:
                assert seen[(row, target)][3] == sum(t == target for _, t, _ in past)
        # leakage: the same row computed from only the links up to its as-of time is identical
        keep = log.time <= moment
        truncated = LinkLog(log.entity[keep], log.target[keep], log.time[keep], 6)
        alone = candidate_pairs(truncated, entity[row : row + 1], as_of[row : row + 1], config)
        mine_now = pairs.filter(pl.col("row") == row).drop("row")
        assert alone.drop("row").equals(mine_now)


@pytest.mark.integration
def test_gbdt_trains_a_link_query_through_dagster(tmp_path):
    defs = shop_definitions(tmp_path, QUERIES)
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        assert materialize(data_assets(defs), resources=defs.resources, instance=instance).success
        model = [a for a in defs.assets if a.key == AssetKey(["shop", "next_products", "model"])]
        for frozen in (False, True):  # frozen: validation as of its first anchor (as search_staleness does)
            config = {"family": "gbdt", "gbdt_trees": 20, "freeze_validation": frozen}
            run_config = {"ops": {"shop__next_products__model": {"config": config}}}
            assert materialize(
                model, resources=defs.resources, instance=instance, run_config=run_config
            ).success

    summaries = {}
    for trained in (tmp_path / "plane" / "shop" / "models" / "next_products").iterdir():
        summary = json.loads((trained / "summary.json").read_text())
        summaries[summary["config"]["freeze_validation"]] = trained, summary
    assert "val_fresh" in summaries[True][1]["metrics"] and "val_fresh" not in summaries[False][1]["metrics"]
    trained, summary = summaries[False]
    assert summary["family"] == "gbdt" and summary["task_type"] == "link_prediction"
    assert {"map@5", "recall@5", "candidate_recall"} <= set(summary["metrics"]["val"])
    ranker = LinkRanker.load(trained / "model.lgb")
    products = pl.read_parquet(tmp_path / "plane" / "shop" / "tables" / "products.parquet")
    assert ranker.top_k == 5 and ranker.classes_ == products.sort(NODE_ID)["product_id"].to_list()
