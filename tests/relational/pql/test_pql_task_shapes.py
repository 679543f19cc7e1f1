"""Every task type end to end on the fake shop: labels have the right shape and meaning."""

from __future__ import annotations

import polars as pl
import pytest

from relational.pql.anchors import AnchorPlan
from relational.pql.training_table import build_training_table
from tests.support.fake_db import make_tables, write_fake_db
from tests.support.pql_helpers import in_memory_graph

DAY = 86400
START = 1704067200  # 2024-01-01
PLAN = AnchorPlan(timestamps={"train": [START + DAY * d for d in (30, 60)], "val": [START + DAY * 100],
                              "test": [START + DAY * 140]})  # fmt: skip


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return in_memory_graph(write_fake_db(tmp_path_factory.mktemp("shop")))


def build(shop, query, plan=PLAN):
    schema, tables = shop
    return build_training_table(query, schema, tables, plan)


def orders_frame():
    orders = make_tables()["orders"].filter(pl.col("created_at") != "")
    return orders.with_columns(pl.col("created_at").str.to_datetime().dt.epoch("s").alias("t"))


def test_multiclass_last_store(shop):
    result = build(shop, "PREDICT LAST(orders.store_id, 0, 30, days) FOR EACH users.user_id")
    assert result.meta["task_type"] == "multiclass_classification"
    orders = orders_frame()
    for entity, anchor, label in result.table.select("entity", "anchor_time", "label").rows():
        window = orders.filter(
            (pl.col("user_id") == entity) & (pl.col("t") > anchor) & (pl.col("t") <= anchor + 30 * DAY)
        )
        assert label == window.sort("t", maintain_order=True)["store_id"][-1]


def test_link_prediction_lists_distinct_products(shop):
    result = build(
        shop, "PREDICT LIST_DISTINCT(orders.product_id, 0, 30, days) RANK TOP 5 FOR EACH users.user_id"
    )
    assert result.meta["task_type"] == "link_prediction"
    assert result.bound.target_table == "products"
    orders = orders_frame()
    entity, anchor, label = result.table.select("entity", "anchor_time", "label").row(0)
    window = orders.filter(
        (pl.col("user_id") == entity) & (pl.col("t") > anchor) & (pl.col("t") <= anchor + 30 * DAY)
    )
    assert sorted(label) == sorted(window["product_id"].unique().to_list())


def test_multilabel_classify_and_static_targets(shop):
    multilabel = build(
        shop, "PREDICT LIST_DISTINCT(orders.store_id, 0, 30, days) CLASSIFY FOR EACH users.user_id"
    )
    assert multilabel.meta["task_type"] == "multilabel_classification"
    static = build(shop, "PREDICT users.age FOR EACH users.user_id")
    assert static.meta["task_type"] == "regression"
    assert static.table["label"].null_count() == 0
    assert set(static.table["split"].unique()) == {"train", "val", "test"}
    assert static.meta["masked_input_columns"] == ["users.age"]
    country = build(shop, "PREDICT users.country FOR EACH users.user_id")
    assert country.meta["task_type"] == "multiclass_classification"


def test_a_delimited_multicategorical_target_becomes_lists_of_tokens(shop):
    tags = build(shop, "PREDICT products.tags RANK TOP 2 FOR EACH products.product_id")
    assert tags.meta["task_type"] == "ranking"
    raw = dict(make_tables()["products"].select("product_id", "tags").iter_rows())
    for product, label in tags.table.select("entity", "label").iter_rows():
        assert label == raw[product].split("|")


def test_for_in_restricts_entities(shop):
    result = build(shop, "PREDICT COUNT(orders.*, 0, 30, days) FOR users.user_id IN (3, 5)")
    assert set(result.table["entity"].to_list()) == {3, 5}
    one = build(shop, "PREDICT COUNT(orders.*, 0, 30, days) FOR users.user_id = 3")
    assert set(one.table["entity"].to_list()) == {3}


def test_forecast_gives_consecutive_windows(shop):
    result = build(shop, "PREDICT COUNT(orders.*, 0, 10, days) FORECAST 3 TIMEFRAMES FOR EACH users.user_id")
    assert result.meta["task_type"] == "forecasting"
    weekly = build(shop, "PREDICT COUNT(orders.*, 10, 20, days) FOR EACH users.user_id")
    forecasts = {
        (e, a): label for e, a, label in result.table.select("entity", "anchor_time", "label").rows()
    }
    for entity, anchor, label in weekly.table.select("entity", "anchor_time", "label").rows():
        assert forecasts[(entity, anchor)][1] == label
    assert all(len(label) == 3 for label in result.table["label"].to_list())


def test_month_windows_are_calendar_months(shop):
    plan = AnchorPlan(timestamps={"train": [1706659200]})  # 2024-01-31
    result = build(shop, "PREDICT COUNT(orders.*, 0, 1, months) FOR EACH users.user_id", plan)
    orders = orders_frame()
    end = 1709164800  # 2024-02-29: one calendar month after Jan 31 in a leap year
    expected = orders.filter((pl.col("t") > 1706659200) & (pl.col("t") <= end)).group_by("user_id").len()
    got = dict(result.table.select("entity", "label").rows())
    assert all(got[user] == count for user, count in expected.rows() if user in got)
    assert sum(got.values()) == expected.filter(pl.col("user_id").is_in(list(got)))["len"].sum()


def test_inferred_anchors_put_test_last(shop):
    result = build(shop, "PREDICT COUNT(orders.*, 0, 7, days) > 0 FOR EACH users.user_id", AnchorPlan())
    anchors = result.meta["anchors"]
    assert anchors["val"]["count"] == 1 and anchors["test"]["count"] == 1
    assert anchors["train"]["last"] < anchors["val"]["first"] < anchors["test"]["first"]
    last_order = orders_frame()["t"].max()
    assert anchors["test"]["first"] == last_order - 7 * DAY
