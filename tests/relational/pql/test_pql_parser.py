"""The PQL parser over a wide set of query shapes: what each clause becomes in the syntax tree."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from relational.pql.ast import Aggregation, BoolOp, Column, Comparison, Literal, Membership, Not, NullCheck
from relational.pql.errors import QueryError
from relational.pql.parser import parse_query
from relational.pql.render import render_query


def test_temporal_binary_with_inner_filter_and_assuming():
    query = parse_query(
        "PREDICT COUNT(results.* WHERE results.statusId != 1, 0, 30, days) > 0 "
        "FOR EACH drivers.driverId ASSUMING COUNT(results.*, 0, 30, days) > 0"
    )
    target = query.target
    assert isinstance(target, Comparison) and target.operator == ">" and target.right.value == 0
    aggregation = target.left
    assert isinstance(aggregation, Aggregation)
    assert (aggregation.function, aggregation.target, aggregation.start, aggregation.end, aggregation.unit) == (
        "COUNT", Column("results", "*"), 0, 30, "days",
    )  # fmt: skip
    assert aggregation.where == Comparison(Column("results", "statusId"), "!=", Literal(1, "number"))
    assert query.entity == Column("drivers", "driverId")
    assert isinstance(query.assuming, Comparison)


@pytest.mark.parametrize(
    "text",
    [
        "predict count(orders.*,0,30)=0 for each users.user_id",
        "PREDICT COUNT(orders.*, 0, 30, DAYS) = 0 FOR EACH users.user_id",
        "Predict Count( orders.* , 0 , 30 , Days )=0  For  Each  users.user_id",
        "PREDICT\nCOUNT(orders.*,\n0,30)\n=0\nFOR EACH users.user_id",
    ],
)
def test_case_and_spacing_do_not_matter(text):
    query = parse_query(text)
    assert query.target == Comparison(
        Aggregation("COUNT", Column("orders", "*"), 0, 30, "days"), "=", Literal(0, "number")
    )


@pytest.mark.parametrize(
    "window, expected",
    [
        ("0, 7", (0, 7, "days")),
        ("0, 12, hours", (0, 12, "hours")),
        ("1, 2, weeks", (1, 2, "weeks")),
        ("0, 90, minutes", (0, 90, "minutes")),
        ("0, 30, seconds", (0, 30, "seconds")),
        ("0, 3, months", (0, 3, "months")),
        ("-INF, 0", (-math.inf, 0, "days")),
        ("-infinity, 0, day", (-math.inf, 0, "days")),
        ("-30, -1", (-30, -1, "days")),
        ("0.5, 1.5, days", (0.5, 1.5, "days")),
    ],
)
def test_windows_and_units(window, expected):
    query = parse_query(f"PREDICT SUM(o.amount, {window}) FOR EACH u.id")
    assert (query.target.start, query.target.end, query.target.unit) == expected


@pytest.mark.parametrize(
    "function", ["SUM", "AVG", "MIN", "MAX", "COUNT", "COUNT_DISTINCT", "FIRST", "LAST", "LIST_DISTINCT"]
)
def test_every_aggregation(function):
    assert parse_query(f"PREDICT {function}(o.x, 0, 1) FOR EACH u.id").target.function == function


def test_quotes_both_styles_and_escapes():
    query = parse_query(
        """PREDICT COUNT(o.* WHERE o.s IN ('a', "b", 'it''s', "say \\"hi\\""), 0, 1) FOR EACH u.id"""
    )
    assert [option.value for option in query.target.where.options] == ["a", "b", "it's", 'say "hi"']


def test_boolean_logic_precedence_and_parentheses():
    query = parse_query("PREDICT u.x FOR EACH u.id WHERE u.a = 1 OR u.b = 2 AND NOT u.c = 3")
    assert isinstance(query.where, BoolOp) and query.where.operator == "OR"
    right = query.where.items[1]
    assert isinstance(right, BoolOp) and right.operator == "AND" and isinstance(right.items[1], Not)
    grouped = parse_query("PREDICT u.x FOR EACH u.id WHERE (u.a = 1 OR u.b = 2) AND u.c = 3").where
    assert grouped.operator == "AND" and grouped.items[0].operator == "OR"


def test_membership_null_checks_and_literals():
    where = parse_query(
        "PREDICT u.x FOR EACH u.id WHERE u.a NOT IN (1, -2, 3.5) AND u.b IS NOT NULL AND u.c IS NULL "
        "AND u.d = TRUE AND u.e < 2022-01-01 12:45:30 AND u.f >= '2024-05-01' AND u.g != NULL"
    ).where
    membership, not_null, null, boolean, date, text, not_equal_null = where.items
    assert isinstance(membership, Membership) and membership.negated
    assert [option.value for option in membership.options] == [1, -2, 3.5]
    assert (
        isinstance(not_null, NullCheck)
        and not_null.negated
        and isinstance(null, NullCheck)
        and not null.negated
    )
    assert boolean.right == Literal(True, "boolean")
    assert date.right == Literal("2022-01-01 12:45:30", "datetime")
    assert text.right == Literal("2024-05-01", "string")
    assert not_equal_null.right.kind == "null"


def test_past_window_filters_and_or_targets():
    query = parse_query(
        "PREDICT COUNT(votes.*,0,91,days)>0 OR COUNT(posts.*,0,91,days)>0 FOR EACH users.id "
        "WHERE COUNT(views.id, -30, 0) > 0 AND LAST(status.value, -1, 0) = 'ACTIVE'"
    )
    assert query.target.operator == "OR" and len(query.target.items) == 2
    assert query.where.items[1].left.function == "LAST"


def test_rank_classify_forecast_and_for_forms():
    ranked = parse_query("PREDICT LIST_DISTINCT(orders.item_id, 0, 7) RANK TOP 12 FOR EACH users.user_id")
    assert ranked.rank_top_k == 12 and not ranked.classify
    classified = parse_query("PREDICT LIST_DISTINCT(orders.category, 0, 7) CLASSIFY FOR EACH users.user_id")
    assert classified.classify
    forecast = parse_query("PREDICT SUM(orders.amount, 0, 7) FORECAST 4 TIMEFRAMES FOR EACH users.user_id")
    assert forecast.forecast_timeframes == 4
    single = parse_query("PREDICT users.age FOR users.user_id = 42")
    assert single.entity_ids == (Literal(42, "number"),)
    several = parse_query("PREDICT users.age FOR users.user_id IN ('a', 'b')")
    assert [literal.value for literal in several.entity_ids] == ["a", "b"]


def test_backquoted_identifiers_and_keyword_like_columns():
    query = parse_query("PREDICT `order lines`.`unit price` FOR EACH users.id WHERE users.count > 1")
    assert query.target == Column("order lines", "unit price")
    assert query.where.left == Column("users", "count")


def test_positions_point_into_the_text():
    text = "PREDICT COUNT(orders.*, 0, 30) > 0 FOR EACH users.user_id"
    query = parse_query(text)
    assert text[query.target.left.position :].startswith("COUNT")
    assert text[query.entity.position :].startswith("users.user_id")


def test_filter_inside_an_aggregation():
    query = parse_query(
        "PREDICT COUNT(orders.* WHERE orders.amount > 100, 0, 30, days) FOR EACH users.user_id"
    )
    assert query.target == Aggregation(
        "COUNT",
        Column("orders", "*"),
        0,
        30,
        "days",
        Comparison(Column("orders", "amount"), ">", Literal(100, "number")),
    )


def test_via_after_the_aggregated_column_and_after_a_plain_column():
    query = parse_query(
        "PREDICT COUNT(flights.* VIA flights.origin VIA dest WHERE flights.delay > 3, 0, 30, days) "
        "FOR EACH airports.faa WHERE airports.elevation VIA x.y > 1"
    )
    assert query.target.via == (Column("flights", "origin"), Column("", "dest"))
    assert query.target.where == Comparison(Column("flights", "delay"), ">", Literal(3, "number"))
    assert query.where.left == Column("airports", "elevation", via=(Column("x", "y"),))
    static = parse_query("PREDICT airports.elevation via flights.ORIGIN FOR EACH flights.flight_id")
    assert static.target == Column("airports", "elevation", via=(Column("flights", "ORIGIN"),))
    assert str(Column("", "dest")) == "dest"


@pytest.mark.parametrize("text, message, at", [
    ("PREDICT COUNT(flights.* VIA, 0, 30) FOR EACH a.b", "expected a foreign key after VIA", ","),
    ("PREDICT COUNT(flights.* VIA flights., 0, 30) FOR EACH a.b", "expected a foreign key column after 'flights.'", ", 0"),
    ("PREDICT COUNT(flights.* WHERE flights.x = 1 VIA origin, 0, 30) FOR EACH a.b",
     "VIA comes right after the aggregated column, before WHERE", "VIA"),
])  # fmt: skip
def test_via_syntax_errors(text, message, at):
    with pytest.raises(QueryError) as info:
        parse_query(text)
    assert message in info.value.message and info.value.position == text.index(at)


@pytest.mark.parametrize("name, hint", [
    ("MEDIAN", "; did you mean MIN?"), ("average", "; did you mean AVG?"), ("COUNTT", "; did you mean COUNT?"),
    ("LIST_DISTINC", "; did you mean LIST_DISTINCT?"), ("stddev", ""),
])  # fmt: skip
def test_an_unknown_aggregation_is_named_with_the_supported_list(name, hint):
    text = f"PREDICT {name}(orders.amount, 0, 30, days) FOR EACH users.user_id"
    with pytest.raises(QueryError) as info:
        parse_query(text)
    supported = "SUM, AVG, MIN, MAX, COUNT, COUNT_DISTINCT, FIRST, LAST, LIST_DISTINCT"
    assert (
        info.value.message
        == f"unknown aggregation {name!r}: the supported aggregations are {supported}{hint}"
    )
    assert info.value.position == text.index(name)
    inner = f"PREDICT COUNT(orders.*, 0, 1) FOR EACH u.id WHERE {name}(orders.x, -1, 0) > 1"
    with pytest.raises(QueryError, match="unknown aggregation") as nested:
        parse_query(inner)
    assert nested.value.position == inner.index(name)


def test_nesting_up_to_the_limit_parses_and_deeper_is_refused_where_it_happens():
    assert isinstance(
        parse_query("PREDICT u.x FOR EACH u.id WHERE " + "(" * 100 + "u.a = 1" + ")" * 100).where, Comparison
    )
    nots = parse_query("PREDICT u.x FOR EACH u.id WHERE " + "NOT " * 100 + "u.a = 1").where
    depth = 0
    while isinstance(nots, Not):
        nots, depth = nots.item, depth + 1
    assert depth == 100
    for text in [
        "PREDICT u.x FOR EACH u.id WHERE " + "(" * 100_000 + "u.a = 1" + ")" * 100_000,
        "PREDICT u.x FOR EACH u.id WHERE " + "NOT " * 5000 + "u.a = 1",
        "PREDICT " + "(NOT " * 51 + "COUNT(o.*, 0, 1) > 0" + ")" * 51 + " FOR EACH u.id",
    ]:
        with pytest.raises(QueryError) as info:
            parse_query(text)
        assert "more than 100 levels deep (the nesting limit)" in info.value.message
        opened = [i for i, c in enumerate(text) if c == "(" or text.startswith("NOT ", i)]
        assert info.value.position == opened[100]  # where the 101st level opens


@pytest.mark.parametrize("text", [
    "PREDICT COUNT(results.* WHERE results.statusId != 1, 0, 30, days) > 0 FOR EACH drivers.driverId "
    "WHERE NOT (drivers.a IN ('x', 'it''s') OR drivers.b IS NULL) AND COUNT(q.*, -INF, 0, days) > 0 "
    "ASSUMING COUNT(results.* VIA results.driverId, 0, 30, days) >= 1",
    "PREDICT LIST_DISTINCT(orders.item_id, 0, 7, hours) RANK TOP 12 FOR users.user_id IN (1, 'b')",
    "PREDICT SUM(o.`odd name`, 0.5, 2, months) FORECAST 3 TIMEFRAMES FOR EACH `my table`.`count`",
    "PREDICT airports.elevation VIA flights.origin VIA dest FOR flights.flight_id = -4 WHERE flights.x < 2024-01-01",
])  # fmt: skip
def test_rendering_parses_back_to_the_same_query(text):
    parsed = parse_query(text)
    rendered = render_query(parsed)
    assert replace(parse_query(rendered), text="") == replace(parsed, text="")
    assert render_query(parse_query(rendered)) == rendered


def test_a_bound_condition_is_described_as_the_pql_it_came_from():
    """`describe_condition` (explain, messages) prints conditions with the parser's own printer: quoting,
    NULL, booleans and precedence as PQL writes them (it printed Python's repr before)."""
    from relational.pql.bound import describe_condition

    text = ("PREDICT COUNT(orders.*, 0, 30, days) > 0 FOR EACH users.user_id WHERE (users.country IN ('DE', "
            "'it''s') OR users.vip = TRUE) AND NOT users.age IS NULL")  # fmt: skip
    where = parse_query(text).where
    assert describe_condition(where) == text.split(" WHERE ", 1)[1]
