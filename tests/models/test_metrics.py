"""models.metrics: sklearn parity on random data with ties, hand-worked ranking cases, NaN rules, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn import metrics as skm

from models.metrics import (
    TASK_TYPES,
    TUNE_METRICS,
    compute_metrics,
    is_better,
    metric_direction,
    tune_metric,
)

SEEDS = st.integers(0, 2**32 - 1)
# Scores on a grid of `levels` steps: 1 or 2 levels give heavy ties, 1000 almost none.
LEVELS = st.sampled_from([1, 2, 5, 1000])
RATES = st.floats(0.0, 1.0)


def approx(value: float):
    return pytest.approx(value, rel=1e-9, abs=1e-12)


def all_nan(metrics: dict[str, float]) -> bool:
    return all(math.isnan(v) for v in metrics.values())


# --- sklearn parity -----------------------------------------------------------------------------


@given(seed=SEEDS, n=st.integers(1, 300), levels=LEVELS, rate=RATES)
def test_binary_matches_sklearn(seed: int, n: int, levels: int, rate: float):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < rate).astype(int)
    p = rng.integers(0, levels + 1, n) / levels
    m = compute_metrics("binary_classification", y, p)
    assert m["accuracy"] == approx(skm.accuracy_score(y, p >= 0.5))
    assert m["f1"] == approx(skm.f1_score(y, p >= 0.5, zero_division=0))
    assert m["log_loss"] == approx(skm.log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1]))
    if 0 < y.sum() < n:
        assert m["auroc"] == approx(skm.roc_auc_score(y, p))
        assert m["auprc"] == approx(skm.average_precision_score(y, p))
    else:
        assert math.isnan(m["auroc"]) and math.isnan(m["auprc"])


def test_binary_matches_sklearn_at_scale():
    rng = np.random.default_rng(0)
    y = (rng.random(200_000) < 0.1).astype(np.int8)
    p = np.round(np.clip(0.3 * y + rng.random(y.size) * 0.7, 0, 1), 3)  # informative, many ties
    m = compute_metrics("binary_classification", y, p)
    assert m["auroc"] == approx(skm.roc_auc_score(y, p))
    assert m["auprc"] == approx(skm.average_precision_score(y, p))
    assert 0.5 < m["auroc"] < 1


@given(
    seed=SEEDS,
    n=st.integers(1, 100),
    horizon=st.sampled_from([None, 1, 3]),
    constant=st.booleans(),
    task=st.sampled_from(["regression", "forecasting"]),
)
def test_regression_matches_sklearn(seed: int, n: int, horizon: int | None, constant: bool, task: str):
    rng = np.random.default_rng(seed)
    shape = (n,) if horizon is None else (n, horizon)
    y = np.full(shape, 2.5) if constant else rng.normal(size=shape)
    p = y + rng.normal(size=shape)
    m = compute_metrics(task, y, p)
    assert m["mae"] == approx(skm.mean_absolute_error(y.ravel(), p.ravel()))
    assert m["rmse"] == approx(skm.root_mean_squared_error(y.ravel(), p.ravel()))
    if np.ptp(y) > 0:
        assert m["r2"] == approx(skm.r2_score(y.ravel(), p.ravel()))
    else:
        assert math.isnan(m["r2"])


@given(seed=SEEDS, n=st.integers(1, 200), classes=st.integers(2, 6), levels=LEVELS)
def test_multiclass_matches_sklearn(seed: int, n: int, classes: int, levels: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    raw = rng.integers(1, levels + 1, (n, classes)).astype(float)  # argmax ties when levels is small
    p = raw / raw.sum(axis=1, keepdims=True)
    m = compute_metrics("multiclass_classification", y, p)
    hard = p.argmax(axis=1)
    assert m["accuracy"] == approx(skm.accuracy_score(y, hard))
    assert m["macro_f1"] == approx(skm.f1_score(y, hard, average="macro", zero_division=0))
    assert m["log_loss"] == approx(skm.log_loss(y, p, labels=list(range(classes))))


@given(seed=SEEDS, n=st.integers(1, 100), labels=st.integers(2, 5), levels=LEVELS, rate=RATES)
def test_multilabel_matches_sklearn(seed: int, n: int, labels: int, levels: int, rate: float):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < rate).astype(int)
    p = rng.integers(0, levels + 1, (n, labels)) / levels
    m = compute_metrics("multilabel_classification", y, p)
    hard = (p >= 0.5).astype(int)
    assert m["f1"] == approx(skm.f1_score(y, hard, average="micro", zero_division=0))
    assert m["accuracy"] == approx(skm.accuracy_score(y, hard))  # subset accuracy
    both = [j for j in range(labels) if 0 < y[:, j].sum() < n]
    if both:
        assert m["auroc"] == approx(np.mean([skm.roc_auc_score(y[:, j], p[:, j]) for j in both]))
        assert m["auprc"] == approx(np.mean([skm.average_precision_score(y[:, j], p[:, j]) for j in both]))
    else:
        assert math.isnan(m["auroc"]) and math.isnan(m["auprc"])


# --- ranking ------------------------------------------------------------------------------------


def reference_ranking(relevant, ranked, k: int) -> dict[str, float]:
    """The definitions, one row at a time (a repeated prediction counts once)."""
    rows = []
    for rel, top in zip(relevant, ranked, strict=True):
        rel = set(np.asarray(rel).tolist())
        if not rel:
            continue
        seen: set[int] = set()
        hits = []
        for item in np.asarray(top)[:k].tolist():
            hits.append(item in rel and item not in seen)
            seen.add(item)
        n_hit = sum(hits)
        ap = sum(sum(hits[: i + 1]) / (i + 1) for i, h in enumerate(hits) if h) / min(k, len(rel))
        dcg = sum(1 / math.log2(i + 2) for i, h in enumerate(hits) if h)
        idcg = sum(1 / math.log2(i + 2) for i in range(min(k, len(rel))))
        rows.append((ap, n_hit / len(rel), n_hit / k, dcg / idcg))
    if not rows:
        return dict.fromkeys([f"map@{k}", f"recall@{k}", f"precision@{k}", f"ndcg@{k}"], math.nan)
    means = np.mean(rows, axis=0)
    return dict(zip([f"map@{k}", f"recall@{k}", f"precision@{k}", f"ndcg@{k}"], means, strict=True))


def test_ranking_single_row_by_hand():
    # Relevant {1, 3}; ranked [1, 2, 3]: hits at ranks 1 and 3.
    m = compute_metrics("ranking", [np.array([1, 3])], np.array([[1, 2, 3]]), k=3)
    assert m["map@3"] == approx((1 / 1 + 2 / 3) / 2)  # = 5/6
    assert m["recall@3"] == approx(1.0)
    assert m["precision@3"] == approx(2 / 3)
    assert m["ndcg@3"] == approx((1 + 1 / 2) / (1 + 1 / math.log2(3)))


def test_ranking_rows_by_hand():
    relevant = [np.array([5]), np.array([], dtype=int), np.array([1, 2, 3]), np.array([8])]
    ranked = np.array([[7, 5, 9], [1, 2, 3], [1, 2, 4], [1, 2, 8]])  # K' = 3 > k = 2
    m = compute_metrics("link_prediction", relevant, ranked, k=2)
    # Row 0: hit at rank 2 -> AP 1/2, recall 1, precision 1/2, ndcg 1/log2(3).
    # Row 1: no relevant items, skipped.
    # Row 2: hits at ranks 1, 2 of 3 relevant -> AP (1 + 1) / min(2, 3) = 1, recall 2/3, precision 1, ndcg 1.
    # Row 3: its item is at rank 3, beyond k -> all 0.
    assert set(m) == {"map@2", "recall@2", "precision@2", "ndcg@2"}
    assert m["map@2"] == approx((1 / 2 + 1 + 0) / 3)
    assert m["recall@2"] == approx((1 + 2 / 3 + 0) / 3)
    assert m["precision@2"] == approx((1 / 2 + 1 + 0) / 3)
    assert m["ndcg@2"] == approx((1 / math.log2(3) + 1 + 0) / 3)


def test_ranking_repeated_prediction_hits_once():
    m = compute_metrics("ranking", [[1]], np.array([[1, 1, 2]]), k=3)
    assert m == approx_dict({"map@3": 1.0, "recall@3": 1.0, "precision@3": 1 / 3, "ndcg@3": 1.0})


def test_ranking_misses_and_ids_far_apart():
    huge = 2**62
    m = compute_metrics("ranking", [[-5, huge], [3]], np.array([[huge, 0], [4, 5]]), k=2)
    # Row 0: hit at rank 1 of 2 relevant -> AP 1/2; row 1: nothing -> 0.
    assert m["map@2"] == approx(0.25)
    assert m["recall@2"] == approx(0.25)


def approx_dict(expected: dict[str, float]):
    return {key: approx(value) for key, value in expected.items()}


@given(
    seed=SEEDS,
    n=st.integers(1, 30),
    k=st.integers(1, 6),
    extra=st.integers(0, 3),
    n_items=st.integers(1, 15),
    task=st.sampled_from(["ranking", "link_prediction"]),
)
def test_ranking_matches_reference(seed: int, n: int, k: int, extra: int, n_items: int, task: str):
    rng = np.random.default_rng(seed)
    relevant = [rng.choice(n_items, rng.integers(0, min(n_items, 5) + 1), replace=False) for _ in range(n)]
    ranked = rng.integers(0, n_items, (n, k + extra))  # repeats allowed
    expected = reference_ranking(relevant, ranked, k)
    m = compute_metrics(task, relevant, ranked, k=k)
    if all_nan(expected):
        assert all_nan(m)
    else:
        assert m == approx_dict(expected)


@given(seed=SEEDS, n=st.integers(1, 30), k=st.integers(1, 8), n_items=st.integers(2, 12))
def test_ndcg_matches_sklearn(seed: int, n: int, k: int, n_items: int):
    rng = np.random.default_rng(seed)
    relevance = (rng.random((n, n_items)) < 0.3).astype(int)
    ranked = np.argsort(rng.random((n, n_items)), axis=1)  # each row a permutation of the items
    scores = np.empty((n, n_items))
    np.put_along_axis(scores, ranked, np.arange(n_items, 0, -1, dtype=float)[None, :].repeat(n, 0), axis=1)
    keep = relevance.sum(axis=1) > 0
    m = compute_metrics("ranking", [np.flatnonzero(r) for r in relevance], ranked, k=min(k, n_items))
    if keep.any():
        assert m[f"ndcg@{min(k, n_items)}"] == approx(
            skm.ndcg_score(relevance[keep], scores[keep], k=min(k, n_items))
        )
    else:
        assert all_nan(m)


# --- hand cases, NaN rules ----------------------------------------------------------------------


def test_binary_hand_cases():
    y = np.array([0, 0, 1, 1])
    wrong = compute_metrics("binary_classification", y, np.array([0.9, 0.8, 0.2, 0.1]))
    assert wrong["auroc"] == 0.0 and wrong["accuracy"] == 0.0 and wrong["f1"] == 0.0
    assert wrong["auprc"] == approx(0.5 * (1 / 3) + 0.5 * (2 / 4))  # positives found at ranks 3 and 4
    right = compute_metrics("binary_classification", y, np.array([0.1, 0.2, 0.8, 0.9]))
    assert right["auroc"] == 1.0 and right["auprc"] == 1.0 and right["accuracy"] == 1.0 and right["f1"] == 1.0
    tied = compute_metrics("binary_classification", y, np.full(4, 0.3))
    assert tied["auroc"] == 0.5 and tied["auprc"] == 0.5  # one threshold: precision = prevalence
    # Positives {0.5, 0.8} vs negatives {0.5, 0.2}: three pairs won, one tied -> 3.5 / 4.
    ties = compute_metrics("binary_classification", [0, 1, 0, 1], [0.5, 0.5, 0.2, 0.8])
    assert ties["auroc"] == 0.875


def test_log_loss_clips():
    sure_and_wrong = compute_metrics("binary_classification", [1, 0], [0.0, 1.0])
    assert sure_and_wrong["log_loss"] == approx(-math.log(1e-7))
    sure_and_right = compute_metrics("binary_classification", [1, 0], [1.0, 0.0])
    assert sure_and_right["log_loss"] == approx(-math.log(1 - 1e-7))
    multi = compute_metrics("multiclass_classification", [2], [[0.5, 0.5, 0.0]])
    assert multi["log_loss"] == approx(-math.log(1e-7))


def test_multiclass_by_hand():
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1]])
    m = compute_metrics("multiclass_classification", np.array([0, 1, 2]), p)
    assert m["accuracy"] == approx(2 / 3)
    assert m["macro_f1"] == approx((2 / 3 + 1 + 0) / 3)  # class 2 is never predicted
    assert m["log_loss"] == approx(-(math.log(0.7) + math.log(0.8) + math.log(0.1)) / 3)
    floats = compute_metrics("multiclass_classification", np.array([0.0, 1.0, 2.0]), p)
    assert floats == m


def test_nan_cases():
    one_class = compute_metrics("binary_classification", [1, 1, 1], [0.2, 0.6, 0.9])
    assert math.isnan(one_class["auroc"]) and math.isnan(one_class["auprc"])
    assert one_class["accuracy"] == approx(2 / 3)
    assert math.isnan(compute_metrics("regression", [3.0, 3.0], [3.0, 3.0])["r2"])
    no_label_varies = compute_metrics("multilabel_classification", [[1, 0], [1, 0]], [[0.9, 0.1], [0.4, 0.2]])
    assert math.isnan(no_label_varies["auroc"]) and math.isnan(no_label_varies["auprc"])
    assert no_label_varies["accuracy"] == 0.5
    assert all_nan(compute_metrics("ranking", [[], []], np.zeros((2, 10), dtype=int)))
    assert all_nan(compute_metrics("link_prediction", [], np.zeros((0, 3), dtype=int), k=3))
    for task, y, p in [
        ("binary_classification", [], []),
        ("regression", [], []),
        ("multiclass_classification", np.zeros(0, dtype=int), np.zeros((0, 3))),
        ("multilabel_classification", np.zeros((0, 2)), np.zeros((0, 2))),
        ("binary_classification", [0, 1], [0.5, math.nan]),  # a diverged model
        ("multiclass_classification", [0, 1], [[0.5, 0.5], [math.nan, 0.5]]),
    ]:
        assert all_nan(compute_metrics(task, y, p)), task
    assert math.isnan(compute_metrics("regression", [1.0, 2.0], [1.0, math.nan])["mae"])


# --- names, directions, errors ------------------------------------------------------------------


SMALL_INPUTS = {
    "binary_classification": ([0, 1], [0.3, 0.7]),
    "regression": ([1.0, 2.0], [1.5, 2.5]),
    "forecasting": ([[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [3.0, 5.0]]),
    "multiclass_classification": ([0, 1], [[0.9, 0.1], [0.2, 0.8]]),
    "multilabel_classification": ([[0, 1], [1, 0]], [[0.2, 0.7], [0.6, 0.4]]),
    "ranking": ([[1], [2, 3]], np.arange(20).reshape(2, 10)),
    "link_prediction": ([[1], [2, 3]], np.arange(20).reshape(2, 10)),
}


@pytest.mark.parametrize("task", TASK_TYPES)
def test_tune_metric_is_computed(task: str):
    assert set(TUNE_METRICS) == set(TASK_TYPES)
    assert tune_metric(task) == TUNE_METRICS[task]
    metrics = compute_metrics(task, *SMALL_INPUTS[task])
    assert tune_metric(task) in metrics
    assert all(isinstance(v, float) for v in metrics.values())
    for name in metrics:
        assert metric_direction(name) in ("maximize", "minimize")


def test_tune_metric_values():
    assert TUNE_METRICS["binary_classification"] == "auroc"
    assert TUNE_METRICS["multilabel_classification"] == "auprc"
    assert tune_metric("ranking", 5) == "map@5"
    assert tune_metric("link_prediction") == "map@10"
    assert tune_metric("regression", 5) == "mae"


@pytest.mark.parametrize(
    ("name", "direction"),
    [
        ("mae", "minimize"),
        ("rmse", "minimize"),
        ("log_loss", "minimize"),
        ("auroc", "maximize"),
        ("r2", "maximize"),
        ("macro_f1", "maximize"),
        ("map@10", "maximize"),
        ("ndcg@3", "maximize"),
        ("recall@100", "maximize"),
    ],
)
def test_metric_direction(name: str, direction: str):
    assert metric_direction(name) == direction


def test_is_better():
    assert is_better("auroc", 0.6, None)
    assert is_better("auroc", 0.7, 0.6) and not is_better("auroc", 0.6, 0.7)
    assert is_better("mae", 1.0, 2.0) and not is_better("mae", 2.0, 1.0)
    assert is_better("map@10", 0.2, 0.1)
    assert not is_better("auroc", 0.6, 0.6)  # ties keep the incumbent
    assert not is_better("auroc", math.nan, None) and not is_better("mae", math.nan, 1.0)
    assert is_better("mae", 5.0, math.nan)  # a NaN best (e.g. one class in validation) is replaceable


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: compute_metrics("classification", [0], [0.5]),
            "unknown task type.*binary_classification.*link_pred",
        ),
        (lambda: compute_metrics("binary_classification", [0, 1, 1], [0.1, 0.2, 0.3, 0.4]), "3 rows.* 4"),
        (lambda: compute_metrics("binary_classification", [0, 2], [0.1, 0.2]), "0/1"),
        (lambda: compute_metrics("binary_classification", [0, 1], [-2.0, 3.0]), r"probabilities in \[0, 1\]"),
        (lambda: compute_metrics("binary_classification", [[0, 1]], [[0.1, 0.2]]), "y_true must be 1-D"),
        (lambda: compute_metrics("multiclass_classification", [0, 1], [0.1, 0.9]), "y_pred must be 2-D"),
        (lambda: compute_metrics("multiclass_classification", [0, 3], [[0.5, 0.5]] * 2), r"\[0, 2\)"),
        (lambda: compute_metrics("multiclass_classification", [0.5], [[0.5, 0.5]]), "integer class"),
        (lambda: compute_metrics("regression", np.zeros((2, 2)), np.zeros((2, 3))), r"\(2, 2\).*\(2, 3\)"),
        (lambda: compute_metrics("regression", np.zeros((2, 2, 2)), np.zeros((2, 2, 2))), "y_true must be"),
        (lambda: compute_metrics("multilabel_classification", [0, 1], [0.2, 0.3]), "2-D"),
        (lambda: compute_metrics("ranking", [[1]], np.array([1, 2])), "y_pred must be 2-D"),
        (lambda: compute_metrics("ranking", [[1], [2]], np.zeros((3, 10), int)), "2 rows.* 3"),
        (lambda: compute_metrics("ranking", [[1]], np.zeros((1, 5), int)), "fewer than k=10"),
        (lambda: compute_metrics("ranking", [["a"]], np.zeros((1, 10), int)), "integer item ids"),
        (lambda: compute_metrics("ranking", [[1]], np.full((1, 10), 0.5)), "integer item ids"),
        (lambda: compute_metrics("ranking", [[1]], np.zeros((1, 10), int), k=0), "positive integer"),
        (lambda: tune_metric("nope"), "unknown task type"),
        (lambda: metric_direction("bogus"), "unknown metric 'bogus'"),
        (lambda: metric_direction("map@ten"), "unknown metric"),
        (lambda: is_better("bogus", 1.0, None), "unknown metric"),
    ],
)
def test_bad_input_raises(call, message: str):
    with pytest.raises(ValueError, match=message):
        call()
