"""The leakage audit catches deliberately leaky tables, and passes honest ones."""

from __future__ import annotations

import polars as pl
import pytest

from relational.pql import bound as bound_module
from relational.pql import windows as windows_module
from relational.pql.anchors import AnchorPlan
from relational.pql.audit import audit_training_table
from relational.pql.binder import bind_query
from relational.pql.compiler import compile_training_table
from relational.pql.errors import LeakageError
from relational.pql.parser import parse_query
from relational.pql.training_table import build_training_table
from tests.relational.pql.linked_graph import linked_graph
from tests.support.fake_db import write_fake_db
from tests.support.pql_helpers import in_memory_graph

DAY = 86400
QUERY = (
    "PREDICT SUM(orders.amount, 0, 7, days) > 50 FOR EACH users.user_id "
    "WHERE COUNT(orders.*, -14, 0, days) > 0"
)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return in_memory_graph(write_fake_db(tmp_path_factory.mktemp("shop")))


@pytest.fixture(scope="module")
def honest(shop):
    schema, tables = shop
    bound = bind_query(parse_query(QUERY), schema)
    start = 1704067200  # 2024-01-01
    anchors = {
        "train": [start + DAY * 14 * k for k in range(1, 7)],
        "val": [start + DAY * 120],
        "test": [start + DAY * 140],
    }
    compiled = compile_training_table(bound, tables, anchors)
    return bound, compiled


def test_honest_table_passes(honest):
    bound, compiled = honest
    report = audit_training_table(bound, compiled.provenance, compiled.anchors)
    assert report["passed"] and report["rows"] == compiled.table.height > 0


def leaky(honest, **changes):
    bound, compiled = honest
    return audit_training_table(bound, compiled.provenance.with_columns(**changes), compiled.anchors)


def test_label_row_after_the_window_end(honest):
    with pytest.raises(LeakageError, match="target0 used rows outside its window"):
        leaky(honest, target0__max_time=pl.col("anchor_time") + 7 * DAY + 1)


def test_label_row_at_the_excluded_window_start(honest):
    with pytest.raises(LeakageError, match="target0 used rows outside its window"):
        leaky(honest, target0__min_time=pl.col("anchor_time"))


def test_filter_that_reads_the_future(honest):
    with pytest.raises(LeakageError, match="filter where0 read rows after the anchor"):
        leaky(honest, where0__max_time=pl.col("anchor_time") + 1)


def test_entity_that_does_not_exist_yet(honest):
    with pytest.raises(LeakageError, match="did not exist yet"):
        leaky(honest, _entity_time=pl.col("anchor_time") + DAY)


def test_splits_out_of_order(honest):
    bound, compiled = honest
    anchors = {**compiled.anchors, "val": [min(compiled.anchors["train"]) - DAY]}
    with pytest.raises(LeakageError, match="train anchors must all come before val anchors"):
        audit_training_table(bound, compiled.provenance, anchors)


def test_train_labels_overlapping_the_val_period(honest):
    bound, compiled = honest
    anchors = {**compiled.anchors, "val": [max(compiled.anchors["train"]) + 3 * DAY]}
    with pytest.raises(LeakageError, match="train labels reach past the first val anchor"):
        audit_training_table(bound, compiled.provenance, anchors)


def test_a_compiler_with_an_off_by_one_window_is_caught(shop, monkeypatch):
    """Simulate a bug: the compiler's window includes one day too many; the audit computes its own."""
    schema, tables = shop
    correct = bound_module.Window.bounds

    def one_day_too_long(self, anchor):
        low, high = correct(self, anchor)
        return low, high + DAY

    monkeypatch.setattr(bound_module.Window, "bounds", one_day_too_long)
    plan = AnchorPlan(timestamps={"train": [1704067200 + DAY * d for d in range(20, 120, 5)]})
    with pytest.raises(LeakageError, match="outside its window"):
        build_training_table(
            "PREDICT COUNT(orders.*, 0, 7, days) FOR EACH users.user_id", schema, tables, plan
        )


FILTERED = "PREDICT COUNT(orders.* WHERE orders.amount > 100, 0, 30, days) FOR EACH users.user_id"
FILTER_PLAN = AnchorPlan(timestamps={"train": [1704067200 + DAY * d for d in range(20, 120, 10)]})


def test_a_filtered_label_is_recomputed_by_the_audit(shop):
    schema, tables = shop
    result = build_training_table(FILTERED, schema, tables, FILTER_PLAN, refuse_degenerate=False)
    assert result.meta["leakage_audit"]["labels_recomputed"] == min(64, result.table.height) > 0
    unfiltered = build_training_table(FILTERED.replace(" WHERE orders.amount > 100", ""), schema, tables, FILTER_PLAN,
                                      refuse_degenerate=False)  # fmt: skip
    assert result.table["label"].sum() < unfiltered.table["label"].sum()  # the filter matters here


def test_a_compiler_that_drops_the_inner_filter_is_caught(shop, monkeypatch):
    """Simulate a bug: the aggregation's WHERE keeps every row; the audit recounts from the tables itself."""
    schema, tables = shop
    monkeypatch.setattr(windows_module, "condition_expression", lambda *args, **kwargs: pl.lit(True))
    with pytest.raises(LeakageError, match="differ from the audit's recomputation"):
        build_training_table(FILTERED, schema, tables, FILTER_PLAN, refuse_degenerate=False)


def test_wrong_labels_are_caught_for_temporal_and_static_targets(shop, tmp_path):
    schema, tables = shop
    bound = bind_query(parse_query(FILTERED), schema, tables)
    anchors = {"train": FILTER_PLAN.timestamps["train"]}
    compiled = compile_training_table(bound, tables, anchors)
    assert audit_training_table(bound, compiled.provenance, compiled.anchors, tables, compiled.table)[
        "passed"
    ]
    shifted = compiled.table.with_columns(pl.col("label") + 1)
    with pytest.raises(LeakageError, match="differ from the audit's recomputation"):
        audit_training_table(bound, compiled.provenance, compiled.anchors, tables, shifted)
    linked_schema, linked_tables = linked_graph(tmp_path)
    static = bind_query(
        parse_query("PREDICT reports.is_fraud FOR EACH transactions.tx_id"), linked_schema, linked_tables
    )
    table = compile_training_table(static, linked_tables, {}).table
    assert audit_training_table(static, table.select("anchor_time", "split"), {}, linked_tables, table)[
        "passed"
    ]
    flipped = table.with_columns((1 - pl.col("label")).alias("label"))
    with pytest.raises(LeakageError, match=r"\d+ of \d+ sampled label\(s\) differ"):
        audit_training_table(static, table.select("anchor_time", "split"), {}, linked_tables, flipped)


def test_a_parent_row_read_before_it_existed_is_caught(tmp_path):
    schema, tables = linked_graph(tmp_path)
    query = "PREDICT COUNT(orders.*, 0, 30, days) FOR EACH users.user_id WHERE regions.inhabitants > 10"
    bound = bind_query(parse_query(query), schema, tables)
    compiled = compile_training_table(bound, tables, {"train": [1704067200 + DAY * 100]})
    [key] = bound.parents
    assert audit_training_table(bound, compiled.provenance, compiled.anchors)["passed"]
    late = compiled.provenance.with_columns(pl.col("anchor_time").alias(f"{key}__time") + 1)
    with pytest.raises(
        LeakageError, match=r"regions\.inhabitants was read from a row created after the anchor"
    ):
        audit_training_table(bound, late, compiled.anchors)
