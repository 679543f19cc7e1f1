"""Columns of tables the entity links to many-to-one (static targets, entity filters) and VIA routes."""

from __future__ import annotations

import polars as pl
import pytest

from relational.pql.anchors import AnchorPlan
from relational.pql.binder import bind_query
from relational.pql.compiler import select_entities
from relational.pql.parser import parse_query
from relational.pql.training_table import task_description
from tests.relational.pql.linked_graph import (
    DAY,
    build,
    caret_at,
    day_seconds,
    linked_graph,
    refusal,
    suggested_fixes,
)


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    return linked_graph(tmp_path_factory.mktemp("linked"))


def raw(linked, table: str) -> pl.DataFrame:
    return linked[1][table].select(pl.exclude("^_kumo_.*$"))


def labels(result) -> dict:
    return dict(result.table.select("entity", "label").iter_rows())


def test_a_parent_column_is_a_static_target_through_the_entity_key(linked):
    result = build(linked, "PREDICT reports.is_fraud FOR EACH transactions.tx_id")
    reports = dict(raw(linked, "reports").select("report_id", "is_fraud").iter_rows())
    expected = {tx: int(reports[report]) for tx, report in raw(linked, "transactions").select("tx_id", "report_id")
                .iter_rows() if reports.get(report) is not None}  # fmt: skip
    assert labels(result) == expected  # null, dangling (99) or unknown parent values give no row
    assert 0 < len(expected) < raw(linked, "transactions").height
    assert result.meta["task_type"] == "binary_classification" and result.meta["positive_class"] is True
    assert task_description(result.meta) == "binary_classification (label 1 = True)"  # what the UI shows
    assert result.meta["masked_input_columns"] == ["reports.is_fraud"]
    assert result.bound.explain()["parent_columns"] == [{"column": "reports.is_fraud", "via": ["report_id"]}]
    times = {
        split: result.table.filter(pl.col("split") == split)["anchor_time"]
        for split in ("train", "val", "test")
    }
    assert times["train"].max() <= times["val"].min() and times["val"].max() <= times["test"].min()
    assert result.table["anchor_time"].null_count() == 0  # split by the transaction's own time


def test_a_parent_two_hops_up_and_a_multiclass_parent_column(linked):
    result = build(linked, "PREDICT regions.inhabitants FOR EACH orders.order_id")
    regions = dict(raw(linked, "regions").select("region_id", "inhabitants").iter_rows())
    users = dict(raw(linked, "users").select("user_id", "region_id").iter_rows())
    expected = {}
    for order, user in raw(linked, "orders").select("order_id", "user_id").iter_rows():
        value = regions.get(users.get(user))
        if value is not None:
            expected[order] = value
    assert labels(result) == expected and result.meta["task_type"] == "regression"
    assert result.bound.explain()["parent_columns"] == [
        {"column": "regions.inhabitants", "via": ["user_id", "region_id"]}
    ]
    kinds = build(linked, "PREDICT reports.kind FOR EACH transactions.tx_id")
    assert kinds.meta["task_type"] == "multiclass_classification" and kinds.meta["positive_class"] is None
    assert task_description(kinds.meta) == "multiclass_classification"


def test_where_on_a_parent_column_filters_entities(linked):
    plain = build(linked, "PREDICT COUNT(orders.*, 0, 30, days) FOR EACH users.user_id")
    filtered = build(
        linked, "PREDICT COUNT(orders.*, 0, 30, days) FOR EACH users.user_id WHERE regions.inhabitants > 1000"
    )
    big = {
        user
        for user, region in raw(linked, "users").select("user_id", "region_id").iter_rows()
        if region == 2
    }
    expected = plain.table.filter(pl.col("entity").is_in(list(big)))
    assert filtered.table.equals(expected) and 0 < filtered.table.height < plain.table.height
    static = build(
        linked,
        "PREDICT users.tier FOR EACH users.user_id WHERE regions.kind = 'city' OR users.country IN ('fr', 'de')",
    )
    rows = raw(linked, "users").filter((pl.col("region_id") == 1) | pl.col("country").is_in(["fr", "de"]))
    assert set(static.table["entity"]) == set(rows["user_id"])
    assert static.meta["masked_input_columns"] == ["users.tier"]


def test_selection_reads_a_parent_row_only_once_it_exists(linked):
    """Orders filtered by their user's country: a user created after the anchor is not known yet."""
    schema, tables = linked
    bound = bind_query(
        parse_query("PREDICT users.tier FOR EACH orders.order_id WHERE users.country = 'fr'"), schema
    )
    anchor = day_seconds(45)
    selected = set(select_entities(bound, tables, [anchor]).table["entity"])
    users = raw(linked, "users").select("user_id", "created", "country")
    known = {user for user, created, country in users.iter_rows() if created <= anchor and country == "fr"}
    orders = raw(linked, "orders").filter(pl.col("at") <= anchor)
    assert selected == set(orders.filter(pl.col("user_id").is_in(list(known)))["order_id"])
    later = {user for user, created, country in users.iter_rows() if created > anchor and country == "fr"}
    assert orders.filter(pl.col("user_id").is_in(list(later))).height > 0  # the rule removed some


def by_hand_counts(linked, key: str, anchor: int, days: int) -> dict:
    flights = raw(linked, "flights").filter((pl.col("at") > anchor) & (pl.col("at") <= anchor + days * DAY))
    return dict(flights.group_by(key).len().iter_rows())


@pytest.mark.parametrize("via, key", [("VIA flights.origin", "origin"), ("VIA origin", "origin"),
                                      ("VIA flights.dest", "dest"), ("via DEST", "dest")])  # fmt: skip
def test_via_picks_the_foreign_key(linked, via, key):
    plan = AnchorPlan(timestamps={"train": [day_seconds(100)]})
    result = build(linked, f"PREDICT COUNT(flights.* {via}, 0, 30, days) FOR EACH airports.faa", plan)
    assert labels(result) == {
        faa: float(n) for faa, n in by_hand_counts(linked, key, day_seconds(100), 30).items()
    }
    assert result.bound.explain()["windows"]["target0"]["via"] == [key]


def test_via_in_where_and_assuming_and_parent_columns(linked):
    query = ("PREDICT COUNT(flights.* VIA origin WHERE flights.delay > 60, 0, 30, days) > 0 FOR EACH airports.faa "
             "WHERE COUNT(flights.* VIA flights.dest, -30, 0, days) > 0 ASSUMING COUNT(flights.* VIA dest, 0, 30, days) > 5")  # fmt: skip
    bound = build(linked, query).bound
    vias = {key: window["via"] for key, window in bound.explain()["windows"].items()}
    assert vias == {"target0": ["origin"], "where0": ["dest"], "assuming0": ["dest"]}
    static = build(linked, "PREDICT airports.elevation VIA flights.dest FOR EACH flights.flight_id")
    elevation = dict(raw(linked, "airports").iter_rows())
    assert labels(static) == {
        f: elevation[d] for f, d in raw(linked, "flights").select("flight_id", "dest").iter_rows()
    }


@pytest.mark.parametrize("query, fragment", [
    ("PREDICT COUNT(flights.*, 0, 30, days) FOR EACH airports.faa", "flights.*"),
    ("PREDICT airports.elevation FOR EACH flights.flight_id", "airports.elevation"),
    ("PREDICT COUNT(flights.* VIA origin, 0, 30, days) FOR EACH airports.faa WHERE COUNT(flights.*, -7, 0, days) > 0",
     "flights.*, -7"),
])  # fmt: skip
def test_two_keys_to_the_same_table_show_a_via_fix_for_each(linked, query, fragment):
    error = refusal(linked, query)
    assert "through several foreign keys (origin or dest)" in error.message
    caret_at(error, fragment)
    fixes = suggested_fixes(error)
    assert len(fixes) == 2 and "VIA flights.origin" in fixes[0] and "VIA flights.dest" in fixes[1]
    schema, tables = linked
    for fix in fixes:
        bind_query(parse_query(fix), schema, tables)  # each suggestion is a query that binds


@pytest.mark.parametrize("query, fragment, caret", [
    ("PREDICT COUNT(flights.* VIA flights.at, 0, 30) FOR EACH airports.faa", "flights.at is not a foreign key",
     "flights.at"),
    ("PREDICT COUNT(flights.* VIA flights.gate, 0, 30) FOR EACH airports.faa", "flights.gate is no column of it",
     "flights.gate"),
    ("PREDICT COUNT(flights.* VIA fligths.origin, 0, 30) FOR EACH airports.faa", "did you mean 'flights'",
     "fligths.origin"),
    ("PREDICT COUNT(flights.* VIA gate, 0, 30) FOR EACH airports.faa", "no foreign key named 'gate'", "gate"),
    ("PREDICT COUNT(orders.* VIA transactions.report_id, 0, 30) FOR EACH users.user_id",
     "no route from orders to users uses it", "transactions.report_id"),
    ("PREDICT COUNT(orders.* WHERE orders.user_id VIA orders.user_id IS NULL, 0, 30) FOR EACH users.user_id",
     "VIA picks the route to a linked table", "orders.user_id IS"),
    ("PREDICT COUNT(orders.*, 0, 30) FOR EACH users.user_id WHERE users.tier VIA users.region_id = 'gold'",
     "VIA picks the route to a linked table", "users.region_id"),
    ("PREDICT COUNT(flights.* WHERE flights.delay > 3 VIA origin, 0, 30) FOR EACH airports.faa",
     "VIA comes right after the aggregated column", "VIA"),
])  # fmt: skip
def test_via_mistakes_are_named_at_their_position(linked, query, fragment, caret):
    error = refusal(linked, query)
    assert fragment in error.message
    caret_at(error, caret)
