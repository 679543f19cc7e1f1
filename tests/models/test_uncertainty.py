"""Entity-resampling bootstrap intervals (models/uncertainty.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.metrics import compute_metrics
from models.uncertainty import (
    ScoredRows,
    grouped_bootstrap,
    paired_difference,
    paired_win_share,
    summary_resamples,
)

BINARY = "binary_classification"


def binary_rows(n: int, seed: int, groups: np.ndarray | None = None) -> ScoredRows:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    scores = (labels * 0.3 + rng.random(n)) / 1.3  # probabilities, a weak signal
    return ScoredRows(labels, scores, np.arange(n) if groups is None else groups)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(8, 40), copies=st.integers(2, 4), seed=st.integers(0, 10_000))
def test_copies_of_an_entity_add_no_evidence(n: int, copies: int, seed: int) -> None:
    """Repeating each entity's row ``copies`` times (as anchors repeat a driver) leaves the interval as it is
    with one row per entity; a row-level bootstrap would narrow it by about sqrt(copies)."""
    single = binary_rows(n, seed)
    repeated = ScoredRows(np.repeat(single.labels, copies), np.repeat(single.outputs, copies),
                          np.repeat(single.groups, copies))  # fmt: skip
    one = grouped_bootstrap(BINARY, "auroc", single, resamples=60, seed=seed)
    many = grouped_bootstrap(BINARY, "auroc", repeated, resamples=60, seed=seed)
    assert many.estimate == pytest.approx(one.estimate)
    assert (many.low, many.high, many.std) == pytest.approx((one.low, one.high, one.std), nan_ok=True)
    assert many.groups == one.groups == n


@settings(max_examples=25, deadline=None)
@given(n=st.integers(6, 60), seed=st.integers(0, 10_000))
def test_estimate_is_the_metric_on_every_row_and_lies_in_a_finite_interval(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    scored = ScoredRows(rng.normal(size=n), rng.normal(size=n), rng.integers(0, max(2, n // 3), n))
    interval = grouped_bootstrap("regression", "mae", scored, resamples=80, seed=seed)
    assert interval.estimate == pytest.approx(
        compute_metrics("regression", scored.labels, scored.outputs)["mae"]
    )
    assert interval.low <= interval.high
    assert interval.std >= 0
    again = grouped_bootstrap("regression", "mae", scored, resamples=80, seed=seed)
    assert again == interval  # one seed, one interval


def test_a_perfect_ranker_has_a_point_interval_and_noise_a_wide_one() -> None:
    labels = np.tile([0, 1], 50)
    perfect = grouped_bootstrap(BINARY, "auroc", ScoredRows(labels, labels * 0.8 + 0.1, np.arange(100) // 2))
    assert (perfect.estimate, perfect.low, perfect.high) == (1.0, 1.0, 1.0)
    noise = grouped_bootstrap(BINARY, "auroc", binary_rows(100, 3, np.arange(100) // 10), resamples=300)
    assert noise.high - noise.low > 0.1  # ten entities: the interval is wide


def test_fewer_entities_give_a_wider_interval_for_the_same_rows() -> None:
    """The same 400 scored rows, once as 400 entities, once as 20 entities of 20 rows each."""
    rows = binary_rows(400, 11)
    clustered = ScoredRows(rows.labels, rows.outputs, np.arange(400) % 20)
    wide = grouped_bootstrap(BINARY, "auroc", clustered, resamples=400)
    narrow = grouped_bootstrap(BINARY, "auroc", rows, resamples=400)
    assert wide.estimate == narrow.estimate
    assert wide.high - wide.low > narrow.high - narrow.low


def test_ranking_labels_are_lists_and_resample_with_their_rows() -> None:
    truth = [np.array([1]), np.array([2, 3]), np.array([0]), np.array([4])] * 5
    ranked = np.array([[1, 0], [2, 3], [1, 2], [0, 4]] * 5)
    scored = ScoredRows(truth, ranked, np.arange(20) // 4)
    interval = grouped_bootstrap("ranking", "map@2", scored, k=2, resamples=50)
    assert interval.estimate == pytest.approx(compute_metrics("ranking", truth, ranked, k=2)["map@2"])
    assert 0 <= interval.low <= interval.estimate <= interval.high <= 1


def test_one_class_resamples_leave_the_interval_undefined_not_wrong() -> None:
    """Two entities, one per class: half the resamples hold one class, where AUROC is undefined."""
    scored = ScoredRows(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]))
    interval = grouped_bootstrap(BINARY, "auroc", scored, resamples=200)
    assert interval.estimate == 1.0
    assert np.isnan(interval.low) and np.isnan(interval.high)


def test_paired_win_share_tells_a_better_model_from_a_copy() -> None:
    rows = binary_rows(300, 5, np.arange(300) // 5)
    oracle = ScoredRows(rows.labels, rows.labels * 0.98 + 0.01 * rows.outputs, rows.groups)
    assert paired_win_share(BINARY, "auroc", oracle, rows, resamples=200) == 1.0
    assert paired_win_share(BINARY, "auroc", rows, rows, resamples=50) == 0.5
    lower_is_better = paired_win_share("regression", "mae", ScoredRows(rows.labels, rows.labels, rows.groups),
                                       ScoredRows(rows.labels, rows.outputs, rows.groups), resamples=50)  # fmt: skip
    assert lower_is_better == 1.0


def test_paired_difference_is_zero_for_a_copy_and_clear_of_zero_for_a_better_model() -> None:
    rows = binary_rows(300, 5, np.arange(300) // 5)
    oracle = ScoredRows(rows.labels, rows.labels * 0.98 + 0.01 * rows.outputs, rows.groups)
    copy = paired_difference(BINARY, "auroc", rows, rows, resamples=50)
    assert copy.estimate == copy.low == copy.high == 0.0
    better = paired_difference(BINARY, "auroc", oracle, rows, resamples=200)
    plain = grouped_bootstrap(BINARY, "auroc", oracle, resamples=10).estimate
    assert better.estimate == pytest.approx(
        plain - grouped_bootstrap(BINARY, "auroc", rows, resamples=10).estimate
    )
    assert 0 < better.low <= better.estimate <= better.high and better.groups == 60
    mae = paired_difference("regression", "mae", ScoredRows(rows.labels, rows.labels, rows.groups),
                            ScoredRows(rows.labels, rows.outputs, rows.groups), resamples=50)  # fmt: skip
    assert mae.high < 0  # lower is better: the exact model's MAE minus the noisy one's is negative
    with pytest.raises(ValueError, match="same rows"):
        paired_difference(BINARY, "auroc", rows, ScoredRows(rows.labels, rows.outputs, rows.groups[::-1]))


def test_bad_inputs_say_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="3 labels, 2 outputs, 3 groups"):
        ScoredRows(np.zeros(3), np.zeros(2), np.zeros(3))
    rows = binary_rows(20, 1)
    with pytest.raises(ValueError, match=r"no metric 'mae'.*auroc"):
        grouped_bootstrap(BINARY, "mae", rows)
    with pytest.raises(ValueError, match="level"):
        grouped_bootstrap(BINARY, "auroc", rows, level=95)
    other = ScoredRows(rows.labels, rows.outputs, rows.groups + 1)
    with pytest.raises(ValueError, match="groups differ"):
        paired_win_share(BINARY, "auroc", rows, other)


def test_large_splits_get_fewer_resamples_but_never_under_200() -> None:
    resamples = [summary_resamples(rows) for rows in (0, 700, 20_000, 50_000, 10**7)]
    assert resamples == [1000, 1000, 1000, 400, 200]
