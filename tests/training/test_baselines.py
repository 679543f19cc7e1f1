"""Trivial baselines and the leaderboard built from them: validation rows only, one holdout row."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from training.baselines import baseline_outputs, trivial_baselines
from training.leaderboard import format_leaderboard, leaderboard_rows, published_numbers


def table(task_type: str, seed: int = 0) -> pl.DataFrame:
    """40 entities, each with a persistent propensity: its own history predicts its validation labels."""
    rng = np.random.default_rng(seed)
    rows = []
    for entity in range(40):
        propensity = rng.random()
        for split, count in (("train", 10), ("val", 2), ("test", 2)):
            for _ in range(count):
                label = float(rng.random() < propensity) if task_type == "binary_classification" else (
                    10 * propensity + rng.normal())  # fmt: skip
                rows.append({"entity": entity, "anchor_time": 0, "label": label, "split": split})
    return pl.DataFrame(rows)


def test_binary_baselines_are_a_constant_and_the_entity_history():
    baselines = {b.name: b for b in trivial_baselines(table("binary_classification"), "binary_classification",
                                                       "auroc")}  # fmt: skip
    assert set(baselines) == {"constant", "own history", "own last value"}
    assert baselines["constant"].interval.estimate == 0.5  # a constant score ranks nothing
    assert baselines["own history"].interval.estimate > 0.7  # persistent entities: history ranks them
    assert baselines["own history"].interval.groups == 40


def test_regression_baselines_and_unsupported_tasks():
    baselines = {b.name: b.interval for b in trivial_baselines(table("regression"), "regression", "mae")}
    assert set(baselines) == {"constant mean", "constant median", "own history", "own last value"}
    assert baselines["own history"].estimate < baselines["constant median"].estimate
    assert trivial_baselines(table("regression"), "multiclass_classification", "accuracy") == []


def test_an_entity_without_history_falls_back_to_the_overall_rate():
    frame = pl.DataFrame({"entity": [1, 1, 2, 3], "anchor_time": [0] * 4, "label": [1, 0, 1, 0],
                          "split": ["train", "train", "val", "val"]})  # fmt: skip
    (_constant, own, last) = trivial_baselines(frame, "binary_classification", "auroc")
    assert (
        own.interval.estimate == last.interval.estimate == 0.5
    )  # both validation entities are new: both get the training rate


def test_test_rows_see_train_and_val_labels_and_the_last_value_is_the_latest_anchors():
    frame = pl.DataFrame({"entity": [1, 1, 1, 2, 1, 2], "anchor_time": [2, 1, 3, 1, 4, 4],
                          "label": [5.0, 1.0, 7.0, 2.0, 0.0, 0.0],
                          "split": ["train", "train", "val", "train", "test", "test"]})  # fmt: skip
    on_test = baseline_outputs(frame, "regression", "test")
    assert list(on_test["own last value"][1]) == [7.0, 2.0]  # entity 1's val label (anchor 3) is its latest
    assert list(on_test["own history"][1]) == [13 / 3, 2.0]
    assert on_test["constant median"][1].tolist() == [3.5, 3.5]  # median of 5, 1, 7, 2
    on_val = baseline_outputs(frame, "regression", "val")
    assert list(on_val["own last value"][1]) == [5.0]  # validation rows see the training labels only
    assert baseline_outputs(frame, "multiclass_classification", "test") == {}


def test_the_leaderboard_puts_validation_first_and_one_holdout_row(tmp_path):
    summary = {"metric": "auroc", "task_type": "binary_classification",
               "best": {"number": 3, "value": 0.8, "params": {"family": "gbdt"},
                        "val_interval": {"low": 0.7, "high": 0.9}}}  # fmt: skip
    baselines = trivial_baselines(table("binary_classification"), "binary_classification", "auroc")
    holdout = {"model": "GBDT trial 3 refit", "value": 0.77, "interval": {"low": 0.7, "high": 0.84}}
    (tmp_path / "published.yaml").write_text(
        "q: [{model: RelGNN, metric: auroc, value: 0.75, protocol: train rows only, source: paper}]\n"
    )
    published = published_numbers(tmp_path / "graph.yaml", "q")
    rows = leaderboard_rows(summary, baselines, holdout, published)
    assert [row["rows"] for row in rows] == ["validation"] * 4 + ["holdout (test)"] * 2
    assert rows[0]["model"] == "chosen: GBDT trial 3" and rows[0]["low"] == 0.7
    assert sum(row["model"].startswith("served") for row in rows) == 1
    assert rows[4]["note"] == "refit on train + val, scored once; each row sees data up to its anchor"
    assert rows[5]["note"] == "train rows only"
    text = format_leaderboard("q", rows)
    assert text.startswith("q:\n") and "0.77" in text and "0.7 .. 0.84" in text
    assert published_numbers(tmp_path / "graph.yaml", "other") == []
    (tmp_path / "published.yaml").write_text("q: [{model: RelGNN, metric: auroc}]\n")
    with pytest.raises(ValueError, match="lacks"):
        published_numbers(tmp_path / "graph.yaml", "q")
