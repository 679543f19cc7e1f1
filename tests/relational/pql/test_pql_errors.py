"""Malformed queries: each error says what was expected or which name is unknown, with a caret under it."""

from __future__ import annotations

import pytest

from relational.pql.binder import bind_query
from relational.pql.errors import QueryError
from relational.pql.parser import parse_query
from tests.conftest import F1_SPEC
from tests.support.pql_helpers import in_memory_graph

E = "FOR EACH drivers.driverId"
# (query, fragment of the message, the text the caret must point at: its first occurrence, or its last
# with "last:", or None for the end of the query)
CASES = [
    ("", "the query is empty", ""),
    (f"COUNT(results.*, 0, 30) {E}", "expected PREDICT", "COUNT"),
    (f"PREDICT {E}", "expected a target after PREDICT", "FOR"),
    (f"PREDICT COUNT(results.*, 0, 30 {E}", "expected ')' to close COUNT(", "FOR"),
    (f"PREDICT COUNT(results.*, 30, 0) {E}", "must be after its start (30)", "0)"),
    (f"PREDICT COUNT(results.*, 0, 30, fortnights) {E}", "expected a time unit", "fortnights"),
    (f"PREDICT COUNT(results.* 0, 30) {E}", "expected ',' and the window start", "0,"),
    (f"PREDICT COUNT(results.*, 0, 30) > {E}", "expected a value", "FOR"),
    ("PREDICT COUNT(results.*, 0, 30) > 0", "expected FOR EACH", None),
    ("PREDICT COUNT(results.*, 0, 30) > 0 FOR drivers.driverId", "expected = or IN after FOR", None),
    (f"PREDICT results.* {E}", "only allowed inside an aggregation", "*"),
    (f"PREDICT COUNT(results.*, 0, 30) > 0 {E} WHERE", "expected a column", None),
    (f"PREDICT COUNT(results.*, 0, 30) > 'x {E}", "unterminated string", "'x"),
    (f"PREDICT COUNT(results.*, 0, 30) > 0 {E};", "unexpected character ';'", ";"),
    (f"PREDICT LIST_DISTINCT(results.raceId, 0, 30) TOP 5 {E}", "TOP K needs RANK", "TOP"),
    (f"PREDICT SUM(results.points, 0, 30) FORECAST 0 TIMEFRAMES {E}", "a whole number >= 1", "0 TIME"),
    (f"PREDICT COUNT(results.*, 0, INF) {E}", "the window end must be finite", "INF"),
    (f"PREDICT drivers {E}", "expected '.' after table 'drivers'", "FOR"),
    (
        f"PREDICT COUNT(results.*, 0, 30) > 0 {E} WHERE drivers.nationality = 'x' extra",
        "expected ASSUMING",
        "extra",
    ),
    (f"PREDICT COUNT(results.*, 0, 30) > 0 {E} WHERE 3", "a constant on its own is not a condition", None),
    # Binding: names and rules.
    (
        f"PREDICT AVG(result.positionOrder, 0, 60) {E}",
        "unknown table 'result'; did you mean 'results'",
        "result.",
    ),
    (f"PREDICT AVG(results.positionOrdr, 0, 60) {E}", "did you mean 'positionOrder'", "results.positionOrdr"),
    (
        "PREDICT COUNT(results.*, 0, 30) FOR EACH drivers.forename",
        "needs the primary key of drivers",
        "drivers.fore",
    ),
    (f"PREDICT SUM(results.*, 0, 30) {E}", "SUM needs a column", "SUM"),
    (
        f"PREDICT AVG(results.statusId, 0, 30) {E}",
        "needs a numerical column, but results.statusId is categorical",
        "results.statusId",
    ),
    (
        f"PREDICT COUNT(results.*, 0, 30) > 0 {E} WHERE COUNT(results.*, 0, 30) > 0",
        "WHERE may only look at the past",
        "last:COUNT(results.*, 0, 30) > 0",
    ),
    (f"PREDICT COUNT(results.*, -30, 0) {E}", "a target window must end in the future", "COUNT"),
    (
        f"PREDICT COUNT(results.*, 0, 5) {E} ASSUMING COUNT(results.*, -10, 5) > 0",
        "ASSUMING looks at the future",
        "COUNT(results.*, -10",
    ),
    (f"PREDICT COUNT(circuits.*, 0, 30) {E}", "circuits has no time column", "circuits.*"),
    (
        f"PREDICT COUNT(results.*, 0, 30) {E} WHERE qualifying.position > 1",
        "no target aggregation reads qualifying",
        "qualifying.position",
    ),
    (f"PREDICT LIST_DISTINCT(results.raceId, 0, 30) {E}", "needs RANK TOP K or CLASSIFY", "LIST_DISTINCT"),
    (f"PREDICT drivers.driverRef {E}", "cannot be predicted", "drivers.driverRef"),
    (f"PREDICT COUNT(results.*, 0, 30) > 'abc' {E}", "expected a number here", "'abc'"),
    (f"PREDICT COUNT(results.*, 0, 30) {E} WHERE drivers.dob < 'someday'", "is not a date", "'someday'"),
    ("PREDICT COUNT(races.*, 0, 30) FOR EACH races.raceId", "not races itself", "races.*"),
    (f"PREDICT COUNT(races.*, 0, 30) {E}", "races is not linked to drivers", "races.*"),
    (
        f"PREDICT LIST_DISTINCT(results.points, 0, 30) RANK TOP 3 {E}",
        "must be a foreign key",
        "LIST_DISTINCT",
    ),
    (
        f"PREDICT drivers.nationality {E} ASSUMING COUNT(results.*, 0, 30) > 0",
        "ASSUMING needs a temporal target",
        "COUNT(results.*, 0, 30) > 0",
    ),
    (f"PREDICT MEDIAN(results.points, 0, 30) {E}", "unknown aggregation 'MEDIAN'", "MEDIAN"),
    (f"PREDICT COUNT(results.*, -10, 30) {E}", "must start at the anchor or later", "COUNT"),
    (
        f"PREDICT COUNT(results.*, 0, 30) > 0 {E} WHERE " + "NOT " * 101 + "drivers.nationality = 'x'",
        "nesting limit",
        "last:NOT ",
    ),
    (
        f"PREDICT COUNT(results.* VIA results.raceId, 0, 30) {E}",
        "no route from results to drivers uses it",
        "results.raceId",
    ),
]


@pytest.fixture(scope="module")
def f1_schema():
    return in_memory_graph(F1_SPEC)[0]


@pytest.mark.parametrize("text, fragment, caret", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_malformed_query(text, fragment, caret, f1_schema):
    with pytest.raises(QueryError) as info:
        bind_query(parse_query(text), f1_schema)
    error = info.value
    assert fragment in error.message
    if caret is None:
        expected = len(text.rstrip())
    elif caret.startswith("last:"):
        expected = text.rindex(caret.removeprefix("last:"))
    else:
        expected = text.index(caret) if caret else 0
    assert error.position == expected, (error.position, expected)
    rendered = str(error).splitlines()
    assert rendered[1].strip() == text.strip() and rendered[2].index("^") - 2 == expected


def test_there_are_at_least_twenty_cases():
    assert len(CASES) >= 20


def _fixes(error: QueryError) -> list[str]:
    return [part for part in error.message.split("`") if part.startswith("PREDICT ")]


@pytest.fixture(scope="module")
def f1():
    return in_memory_graph(F1_SPEC)


def test_list_distinct_without_rank_or_classify_shows_both_fixes(f1):
    schema, _ = f1
    with pytest.raises(QueryError) as info:
        bind_query(parse_query(f"PREDICT LIST_DISTINCT(results.raceId, 0, 30, days) {E}"), schema)
    assert _fixes(info.value) == [
        f"PREDICT LIST_DISTINCT(results.raceId, 0, 30, days) RANK TOP 10 {E}",
        f"PREDICT LIST_DISTINCT(results.raceId, 0, 30, days) CLASSIFY {E}",
    ]
    assert bind_query(parse_query(_fixes(info.value)[0]), schema).task_type == "link_prediction"
    with pytest.raises(QueryError) as plain:
        bind_query(parse_query(f"PREDICT LIST_DISTINCT(results.statusId, 0, 30, days) {E}"), schema)
    assert "results.statusId is no foreign key" in plain.value.message
    assert _fixes(plain.value) == [f"PREDICT LIST_DISTINCT(results.statusId, 0, 30, days) CLASSIFY {E}"]
    assert bind_query(parse_query(_fixes(plain.value)[0]), schema).task_type == "multilabel_classification"


TYPE_CASES = [
    (
        f"PREDICT COUNT(results.*, 0, 30) {E} WHERE drivers.nationality > 3",
        "drivers.nationality is categorical",
        "3",
        "drivers.nationality > '3'",
    ),
    (
        f"PREDICT COUNT(results.* WHERE results.statusId = 'x', 0, 30) {E}",
        "results.statusId is categorical",
        "'x'",
        "results.statusId = 0",
    ),
    (
        f"PREDICT COUNT(results.* WHERE results.points IN (1, '2'), 0, 30) {E}",
        "results.points is numerical",
        "'2'",
        "results.points IN (1, 2)",
    ),
    (
        f"PREDICT COUNT(results.*, 0, 30) {E} ASSUMING results.points > '10'",
        "results.points is numerical",
        "'10'",
        "WHERE NOT results.points > 10",
    ),
    (
        f"PREDICT COUNT(results.*, 0, 30) {E} WHERE drivers.nationality IN (TRUE)",
        "drivers.nationality is categorical",
        "TRUE",
        "drivers.nationality IN ('true')",
    ),
    (
        f"PREDICT MAX(results.points, 0, 30) = 'high' {E}",
        "MAX(results.points) is numerical",
        "'high'",
        "MAX(results.points, 0, 30, days) = 0",
    ),
]


@pytest.mark.parametrize("text, named, literal, fixed", TYPE_CASES)
def test_a_constant_of_the_wrong_type_is_refused_at_bind_time(f1, text, named, literal, fixed):
    schema, tables = f1
    with pytest.raises(QueryError) as info:
        bind_query(parse_query(text), schema, tables)
    assert named in info.value.message and info.value.position == text.rindex(literal)
    [fix] = _fixes(info.value)
    assert fixed in fix
    bind_query(parse_query(fix), schema, tables)


def test_dates_still_compare_with_time_columns(f1):
    schema, tables = f1
    bound = bind_query(parse_query(f"PREDICT COUNT(results.*, 0, 30) {E} WHERE drivers.dob < '1980-01-01' "
                                   "AND drivers.dob >= 1950-01-01"), schema, tables)  # fmt: skip
    assert [item.right.value for item in bound.where.items] == [315532800, -631152000]
