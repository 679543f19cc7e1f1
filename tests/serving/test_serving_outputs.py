"""Prediction rows by task type, and the validation threshold, on outputs whose right answer is known."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from serving.outputs import OutputContext, choose_threshold, output_schema, prediction_frame

ENTITIES = pl.Series(["a", "b"])
ANCHORS = np.array([0, 86_400])
AGES = np.array([1.0, 2.5])


def frame(task: str, outputs, scores=None, **extra) -> pl.DataFrame:
    context = OutputContext(task, pl.String, model_version="gnn:k", data_version="d", **extra)
    return prediction_frame(context, ENTITIES, ANCHORS, np.asarray(outputs), scores, AGES)


def test_multiclass_rows_name_the_top_classes_in_order():
    result = frame("multiclass_classification", [[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], classes=["x", "y", "z"])
    assert result["predicted_class"].to_list() == ["y", "x"]
    assert result["top_classes"].to_list() == [["y", "z", "x"], ["x", "z", "y"]]
    assert result["top_probabilities"].to_list()[0] == pytest.approx([0.7, 0.2, 0.1])


def test_multilabel_rows_list_the_labels_above_one_half_with_their_scores():
    result = frame("multilabel_classification", [[0.9, 0.2, 0.6], [0.1, 0.1, 0.1]], classes=["p", "q", "r"])
    assert result["labels"].to_list() == [["p", "r"], []]
    assert result["label_scores"].to_list()[0] == pytest.approx([0.9, 0.6])


def test_ranked_rows_translate_node_ids_to_target_keys():
    keys = pl.Series(["P0", "P1", "P2"])
    result = frame(
        "link_prediction", [[2, 0], [1, 2]], scores=np.array([[3.0, 1.0], [2.0, -1.0]]), target_keys=keys
    )
    assert result["targets"].to_list() == [["P2", "P0"], ["P1", "P2"]]
    assert result["scores"].to_list() == [[3.0, 1.0], [2.0, -1.0]]


def test_binary_rows_cut_at_the_threshold_and_carry_versions_and_anchors():
    result = frame("binary_classification", [0.3, 0.8], threshold=0.5)
    assert result["predicted_class"].to_list() == [0, 1]
    assert result["anchor_time"].dt.epoch("s").to_list() == [0, 86_400]
    assert str(result.schema["anchor_time"].time_zone) == "UTC"
    assert result.columns[-3:] == ["model_version", "data_version", "data_age_days"]
    forecast = frame("forecasting", [[1.0, 2.0], [3.0, 4.0]])
    assert forecast["values"].to_list() == [[1.0, 2.0], [3.0, 4.0]]


def test_every_task_has_a_schema_an_empty_file_can_be_written_with():
    for task in ("binary_classification", "regression", "forecasting", "multiclass_classification",
                 "multilabel_classification", "link_prediction", "ranking"):  # fmt: skip
        schema = output_schema(OutputContext(task, pl.Int64, classes=["a"]))
        assert list(schema)[:2] == ["entity", "anchor_time"] and pl.DataFrame(schema=schema).height == 0


def test_the_threshold_maximises_f1_on_validation_rows():
    labels = np.array([1, 1, 0, 1, 0, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.1])
    chosen = choose_threshold(labels, scores, "test rows")
    # predicting the top 4 positive: precision 3/4, recall 1 -> F1 6/7, the best cut
    assert chosen["value"] == 0.6 and chosen["f1"] == pytest.approx(6 / 7)
    assert choose_threshold(np.array([1, 0, 1]), np.array([0.5, 0.5, 0.1]), "t")["value"] == 0.1
    tied = choose_threshold(np.array([1, 0]), np.array([0.5, 0.5]), "ties")
    assert tied["f1"] == pytest.approx(
        2 / 3
    )  # a cut keeps tied scores together: never "just the positive one"
    assert choose_threshold(np.zeros(3), np.ones(3), "none")["value"] == 0.5
