"""Conditions on a linked table's future rows: ASSUMING on rows, WHERE on the target table's rows, and
target windows that would start before the anchor."""

from __future__ import annotations

import polars as pl
import pytest

from relational.pql.binder import bind_query
from relational.pql.compiler import select_entities
from relational.pql.parser import parse_query
from tests.relational.pql.linked_graph import (
    DAY,
    build,
    caret_at,
    day_seconds,
    linked_graph,
    refusal,
    suggested_fixes,
)

U = "FOR EACH users.user_id"


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    return linked_graph(tmp_path_factory.mktemp("linked"))


def rows(result) -> list[tuple]:
    return result.table.select("entity", "anchor_time", "label", "split").rows()


@pytest.mark.parametrize("assuming, written_out", [
    ("orders.discount = 0.1", "COUNT(orders.* WHERE NOT orders.discount = 0.1, 0, 30, days) = 0"),
    ("NOT orders.status = 'open' AND users.tier = 'gold'",
     "COUNT(orders.* WHERE NOT NOT orders.status = 'open', 0, 30, days) = 0 AND users.tier = 'gold'"),
    ("orders.amount < 150 OR COUNT(orders.*, 0, 30, days) > 2",
     "COUNT(orders.* WHERE NOT orders.amount < 150, 0, 30, days) = 0 OR COUNT(orders.*, 0, 30, days) > 2"),
])  # fmt: skip
def test_assuming_on_rows_is_every_row_in_the_target_window(linked, assuming, written_out):
    target = f"PREDICT COUNT(orders.*, 0, 30, days) > 0 {U}"
    result = build(linked, f"{target} ASSUMING {assuming}")
    assert rows(result) == rows(build(linked, f"{target} ASSUMING {written_out}"))
    assert 0 < result.table.height < build(linked, target).table.height


def test_assuming_on_rows_by_hand_with_missing_values(linked):
    """Every order of the user in (anchor, anchor + 30 days] has discount 0.1; a missing discount fails."""
    result = build(linked, f"PREDICT COUNT(orders.*, 0, 30, days) {U} ASSUMING orders.discount = 0.1")
    _, tables = linked
    orders = tables["orders"].select("user_id", "at", "discount")
    for user, anchor, label, _ in rows(result):
        window = orders.filter(
            (pl.col("user_id") == user) & (pl.col("at") > anchor) & (pl.col("at") <= anchor + 30 * DAY)
        )
        assert window["discount"].to_list() == [0.1] * int(label)
    kept = {(user, anchor) for user, anchor, _, _ in rows(result)}
    users = tables["users"].select("user_id", "created")
    dropped = 0
    for anchor in result.table["anchor_time"].unique():
        for user, created in users.iter_rows():
            window = orders.filter(
                (pl.col("user_id") == user) & (pl.col("at") > anchor) & (pl.col("at") <= anchor + 30 * DAY)
            )
            if created <= anchor and (user, anchor) not in kept:
                assert not all(
                    value == 0.1 for value in window["discount"].to_list()
                )  # a null counts as a miss
                dropped += 1
    assert dropped > 0


def test_assuming_on_rows_spans_every_target_window(linked):
    query = (f"PREDICT COUNT(orders.*, 0, 10, days) > 0 OR SUM(orders.amount, 5, 40, days) > 100 {U} "
             "ASSUMING orders.status IS NOT NULL")  # fmt: skip
    spanned = "ASSUMING COUNT(orders.* WHERE NOT orders.status IS NOT NULL, 0, 40, days) = 0"
    result = build(linked, query)
    assert rows(result) == rows(build(linked, query.split(" ASSUMING ")[0] + " " + spanned))
    assert rows(result) != rows(
        build(linked, query.split(" ASSUMING ")[0] + " " + spanned.replace("40", "10"))
    )


def test_where_on_the_target_tables_rows_filters_what_it_counts(linked):
    pushed = build(linked, f"PREDICT COUNT(orders.*, 0, 30, days) > 1 OR SUM(orders.amount, 0, 30, days) > 300 {U} "
                           "WHERE orders.status = 'done' AND users.tier = 'gold'")  # fmt: skip
    inside = build(linked, "PREDICT COUNT(orders.* WHERE orders.status = 'done', 0, 30, days) > 1 OR SUM(orders.amount "
                           f"WHERE orders.status = 'done', 0, 30, days) > 300 {U} WHERE users.tier = 'gold'")  # fmt: skip
    assert rows(pushed) == rows(inside)
    assert rows(pushed) != rows(build(linked, f"PREDICT COUNT(orders.*, 0, 30, days) > 1 OR SUM(orders.amount, 0, 30, "
                                              f"days) > 300 {U} WHERE users.tier = 'gold'"))  # fmt: skip
    assert "WHERE orders.status = 'done'" in pushed.bound.explain()["target"]


def test_selection_applies_parent_filters_but_not_filters_on_future_rows(linked):
    """Serving scores what FOR EACH and WHERE select: a parent's column is known, the target's rows are not."""
    schema, tables = linked
    query = f"PREDICT COUNT(orders.*, 0, 30, days) {U} WHERE orders.status = 'done' AND regions.inhabitants > 1000"
    bound = bind_query(parse_query(query), schema, tables)
    anchor = day_seconds(150)
    selected = set(select_entities(bound, tables, [anchor]).table["entity"])
    users = tables["users"].filter((pl.col("created") <= anchor) & (pl.col("region_id") == 2))
    assert selected == set(users["user_id"]) and selected  # every user of the big region, orders or not


@pytest.mark.parametrize("query, fragment, caret", [
    (f"PREDICT COUNT(orders.*, 0, 30, days) {U} WHERE orders.status = 'done' OR users.tier = 'gold'",
     "not inside OR", "orders.status"),
    (f"PREDICT COUNT(orders.*, 0, 30, days) {U} WHERE NOT orders.status = 'done'", "not inside NOT", "orders.status"),
    (f"PREDICT COUNT(orders.*, 0, 30, days) {U} WHERE orders.status VIA orders.user_id = 'done'", "not with VIA",
     "orders.status"),
    (f"PREDICT COUNT(transactions.*, 0, 30, days) {U} WHERE orders.status = 'done'",
     "no target aggregation reads orders", "orders.status"),
    (f"PREDICT users.tier {U} WHERE orders.status = 'done'", "no target aggregation reads orders", "orders.status"),
    (f"PREDICT COUNT(orders.*, 0, 30, days) {U} ASSUMING regions.kind = 'city'", "belongs in WHERE, not ASSUMING",
     "regions.kind"),
    (f"PREDICT users.tier {U} ASSUMING orders.status = 'done'", "ASSUMING needs a temporal target", "orders.status"),
    (f"PREDICT users.tier {U} WHERE COUNT(orders.*, -30, 0, days) > 0", "has no anchor time", "COUNT"),
    (f"PREDICT users.tier = 'gold' {U}", "a condition on static columns cannot be a target", "users.tier"),
    (f"PREDICT COUNT(orders.*, -10, 30, days) {U}", "must start at the anchor or later", "COUNT"),
    (f"PREDICT COUNT(orders.*, -INF, 30, days) > 0 {U} WHERE users.tier = 'gold'", "must start at the anchor",
     "COUNT"),
])  # fmt: skip
def test_refusals_name_the_rule_and_show_a_fix_that_binds(linked, query, fragment, caret):
    error = refusal(linked, query)
    assert fragment in error.message
    caret_at(error, caret)
    schema, tables = linked
    for fix in suggested_fixes(error):
        bind_query(parse_query(fix), schema, tables)


def test_target_starting_before_the_anchor_suggests_the_past_in_where(linked):
    error = refusal(linked, f"PREDICT COUNT(orders.*, -10, 30, days) {U}")
    assert suggested_fixes(error) == [
        f"PREDICT COUNT(orders.*, 0, 30, days) {U}",
        f"PREDICT COUNT(orders.*, 0, 30, days) {U} WHERE COUNT(orders.*, -10, 0, days) > 0",
    ]
