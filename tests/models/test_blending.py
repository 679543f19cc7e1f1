"""Blending two models' outputs: what the blend is, when validation prefers it, and the stored scored rows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.blending import blend_outputs, blend_report, scored_rows_bytes, scored_rows_from_bytes
from models.metrics import compute_metrics
from models.uncertainty import ScoredRows


def halves_of_a_signal(rows: int = 2000, seed: int = 0):
    """Labels from u + v; one model sees only u, the other only v (and squashes it): each is half right."""
    rng = np.random.default_rng(seed)
    u, v = rng.normal(size=rows), rng.normal(size=rows)
    labels = (u + v + 0.3 * rng.normal(size=rows) > 0).astype(np.float64)
    groups = np.arange(rows) // 5
    sees_u = 1 / (1 + np.exp(-u))
    sees_v = 1 / (1 + np.exp(-8 * v))  # another calibration: only the order is comparable
    return ScoredRows(labels, sees_u, groups), ScoredRows(labels, sees_v, groups)


def test_validation_prefers_the_blend_of_two_models_that_each_see_half():
    gnn, gbdt = halves_of_a_signal()
    report = blend_report("binary_classification", {"gnn": gnn, "gbdt": gbdt})
    assert report["metric"] == "auroc" and set(report["members"]) == {"gnn", "gbdt"}
    assert report["blend"] > max(report["members"].values()) + 0.05 and report["blend_is_better"]


def test_a_perfect_model_is_not_improved_by_blending_it_with_noise():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 500).astype(np.float64)
    groups = np.arange(500)
    perfect = ScoredRows(labels, labels * 0.8 + 0.1, groups)
    noise = ScoredRows(labels, rng.random(500), groups)
    report = blend_report("binary_classification", {"gnn": noise, "gbdt": perfect})
    assert report["best_member"] == "gbdt" and not report["blend_is_better"]


def test_regression_blends_values_and_minimises_its_metric():
    rng = np.random.default_rng(2)
    truth = rng.normal(size=400)
    groups = np.arange(400)
    high, low = ScoredRows(truth, truth + 1.0, groups), ScoredRows(truth, truth - 1.0, groups)
    report = blend_report("regression", {"a": high, "b": low})
    assert report["metric"] == "mae" and report["blend"] == pytest.approx(0.0, abs=1e-12)
    assert report["blend_is_better"]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), power=st.floats(0.2, 5.0))
def test_binary_blends_read_only_the_order_of_each_model(seed, power):
    """Rank averaging: a monotone recalibration of one member leaves the blend's ordering unchanged."""
    gnn, gbdt = halves_of_a_signal(300, seed)
    recalibrated = gbdt.outputs**power
    first = blend_outputs("binary_classification", [gnn.outputs, gbdt.outputs])
    second = blend_outputs("binary_classification", [gnn.outputs, recalibrated])
    np.testing.assert_allclose(first, second)
    auroc = compute_metrics("binary_classification", gnn.labels, first)["auroc"]
    assert 0.5 < auroc <= 1.0


def test_blends_refuse_ranked_lists_and_rows_that_differ():
    gnn, gbdt = halves_of_a_signal(100)
    with pytest.raises(ValueError, match="ranked lists"):
        blend_outputs("link_prediction", [gnn.outputs, gbdt.outputs])
    shuffled = ScoredRows(gbdt.labels, gbdt.outputs, gbdt.groups[::-1].copy())
    with pytest.raises(ValueError, match="scored other rows"):
        blend_report("binary_classification", {"gnn": gnn, "gbdt": shuffled})


def test_scored_rows_round_trip_ranked_labels_included():
    gnn, _ = halves_of_a_signal(50)
    entities = ScoredRows(
        gnn.labels, gnn.outputs, np.array([f"driver {i // 5}" for i in range(50)], dtype=object)
    )
    back = scored_rows_from_bytes(scored_rows_bytes({"val": gnn, "test": entities}))
    assert set(back) == {"val", "test"}
    np.testing.assert_array_equal(back["val"].outputs, gnn.outputs)
    np.testing.assert_array_equal(back["test"].groups, entities.groups.astype(str))
    ranked = ScoredRows(
        [np.array([1, 2]), np.array([], np.int64), np.array([3])], np.zeros((3, 10)), np.arange(3)
    )
    (back,) = scored_rows_from_bytes(scored_rows_bytes({"val": ranked})).values()
    assert [labels.tolist() for labels in back.labels] == [[1, 2], [], [3]]
    assert back.outputs.shape == (3, 10)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=30), st.lists(st.floats(0, 1), min_size=1, max_size=30))
def test_a_binary_blend_of_scores_outside_the_references_stays_a_probability(scores, references):
    # a test score above every validation score once mapped to (n + 1/2) / n and failed the metrics
    blended = blend_outputs("binary_classification", [np.asarray(scores)] * 2, [np.asarray(references)] * 2)
    assert ((blended >= 0) & (blended <= 1)).all()
    compute_metrics("binary_classification", np.arange(len(scores)) % 2, blended)
