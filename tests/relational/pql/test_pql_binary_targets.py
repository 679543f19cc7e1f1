"""A target with two classes is binary classification: booleans (1 = true), and categorical columns with
exactly two classes in the data (1 = the yes-like class, else the one that sorts last)."""

from __future__ import annotations

import polars as pl
import pytest

from relational.pql.anchors import AnchorPlan
from relational.pql.training_table import label_distribution, training_table_checks
from relational.pql.values import positive_class
from tests.relational.pql.linked_graph import DAY, build, day_seconds, linked_graph


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    return linked_graph(tmp_path_factory.mktemp("linked"))


@pytest.mark.parametrize("values, positive", [
    ([True, False], True),
    (["true", "FALSE"], "true"),
    (["No", "Yes"], "Yes"),
    (["n", "Y"], "Y"),
    ([0, 1], 1),
    (["1", "0"], "1"),
    (["F", "t"], "t"),
    (["gold", "silver"], "silver"),
    (["b", "a", None, "a"], "b"),
    ([3, 7], 7),
    (["a", "b", "c"], None),
    (["only"], None),
])  # fmt: skip
def test_the_positive_class(values, positive):
    assert positive_class(pl.Series(values)) == positive


def test_an_all_true_boolean_is_still_binary():
    assert positive_class(pl.Series([True, None], dtype=pl.Boolean)) is True


@pytest.mark.parametrize("column, positive", [("churned", True), ("vip", "Yes"), ("tier", "silver")])
def test_static_two_class_columns_are_binary(linked, column, positive):
    result = build(linked, f"PREDICT users.{column} FOR EACH users.user_id")
    assert result.meta["task_type"] == "binary_classification" and result.meta["positive_class"] == positive
    assert result.bound.explain()["positive_class"] == positive
    users = dict(linked[1]["users"].select("user_id", column).iter_rows())
    expected = {user: int(value == positive) for user, value in users.items() if value is not None}
    assert dict(result.table.select("entity", "label").iter_rows()) == expected
    assert result.table.schema["label"] == pl.Int64 and 0 < sum(expected.values()) < len(expected)
    distribution = result.meta["label_distribution"]
    assert sum(s["positives"] for s in distribution.values() if s["rows"]) == sum(expected.values())
    _, labels = training_table_checks(result.meta, minimum=1)
    assert set(labels.metadata) == {"train", "val", "test"} and "positives" in labels.metadata["train"]


def test_three_classes_stay_multiclass(linked):
    result = build(linked, "PREDICT users.country FOR EACH users.user_id")
    assert result.meta["task_type"] == "multiclass_classification" and result.meta["positive_class"] is None
    assert "top" in result.meta["label_distribution"]["train"]


@pytest.mark.parametrize("target, column, positive", [
    ("LAST(orders.gift, 0, 30, days)", "gift", True),
    ("FIRST(orders.status, 0, 30, days)", "status", "open"),
])  # fmt: skip
def test_first_and_last_of_two_classes_are_binary(linked, target, column, positive):
    result = build(linked, f"PREDICT {target} FOR EACH users.user_id")
    assert result.meta["task_type"] == "binary_classification" and result.meta["positive_class"] == positive
    orders = linked[1]["orders"].filter(pl.col(column).is_not_null())
    last = target.startswith("LAST")
    for user, anchor, label in result.table.select("entity", "anchor_time", "label").iter_rows():
        window = orders.filter(
            (pl.col("user_id") == user) & (pl.col("at") > anchor) & (pl.col("at") <= anchor + 30 * DAY)
        )
        value = window.sort("at", maintain_order=True)[column][-1 if last else 0]
        assert label == int(value == positive)
    unknown = linked[1]["orders"].filter(pl.col(column).is_null())
    assert unknown.height > 0  # rows with a missing class are skipped by FIRST/LAST, never labelled 0 or 1


def test_a_two_class_label_of_a_child_with_via(linked):
    plan = AnchorPlan(timestamps={"train": [day_seconds(d) for d in (30, 60, 90)], "val": [day_seconds(150)],
                                  "test": [day_seconds(200)]})  # fmt: skip
    result = build(linked, "PREDICT LAST(flights.late VIA dest, 0, 30, days) FOR EACH airports.faa", plan)
    assert result.meta["positive_class"] == "Y" and set(result.table["label"]) <= {0, 1}
    assert label_distribution(result.table, "binary_classification")["train"]["rows"] == 9
