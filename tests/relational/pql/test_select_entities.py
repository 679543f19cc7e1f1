"""The entities a prediction scores: what FOR EACH and WHERE select at an anchor, through the training-table
code, without the target or ASSUMING (which read the future), and audited."""

from __future__ import annotations

import polars as pl
import pytest

from relational.pql.anchors import AnchorPlan
from relational.pql.audit import audit_entity_selection
from relational.pql.binder import bind_query
from relational.pql.compiler import select_entities
from relational.pql.errors import LeakageError
from relational.pql.parser import parse_query
from relational.pql.training_table import build_training_table
from tests.conftest import F1_SPEC
from tests.support.pql_helpers import in_memory_graph

DNF = ("PREDICT COUNT(results.* WHERE results.statusId != 1, 0, 30, days) > 0 FOR EACH drivers.driverId "
       "WHERE COUNT(qualifying.*, -365, 0, days) > 0 ASSUMING COUNT(results.*, 0, 30, days) > 0")  # fmt: skip
ANCHORS = [1_262_304_000, 1_270_000_000]  # 2010-01-01 and a day in April 2010


@pytest.fixture(scope="module", name="f1")
def f1_fixture():
    return in_memory_graph(F1_SPEC)


def test_selection_is_the_training_rows_before_the_future_conditions(f1):
    schema, tables = f1
    bound = bind_query(parse_query(DNF), schema)
    selected = select_entities(bound, tables, ANCHORS)
    table = build_training_table(DNF, schema, tables, AnchorPlan(timestamps={"test": ANCHORS})).table
    assert selected.table.columns == ["entity", "anchor_time"] and selected.table.height > 0
    picked = set(selected.table.iter_rows())
    labelled = set(table.select("entity", "anchor_time").iter_rows())
    assert labelled < picked  # ASSUMING drops drivers without a result in the window; selection keeps them
    qualifying = tables["qualifying"].join(tables["drivers"].select("_kumo_id", "driverId"),
                                           left_on="_kumo_fk__driverId", right_on="_kumo_id")  # fmt: skip
    for anchor in ANCHORS:  # the WHERE, by hand: qualified in the 365 days up to the anchor
        window = qualifying.filter(
            (pl.col("_kumo_time") > anchor - 365 * 86400) & (pl.col("_kumo_time") <= anchor)
        )
        expected = set(window["driverId"].to_list())
        assert {entity for entity, at in picked if at == anchor} == expected
    assert audit_entity_selection(bound, selected.provenance)["passed"] is True


def test_the_audit_refuses_a_selection_that_read_after_its_anchor(f1):
    schema, tables = f1
    bound = bind_query(parse_query(DNF), schema)
    provenance = select_entities(bound, tables, ANCHORS).provenance
    late = provenance.with_columns(pl.col("where0__max_time") + 400 * 86400)
    with pytest.raises(LeakageError, match="filter where0 read rows after the anchor"):
        audit_entity_selection(bound, late)
