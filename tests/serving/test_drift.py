"""Population stability index: zero for the same distribution, growing with a shift, None without data."""

from __future__ import annotations

import numpy as np
import pytest

from serving.drift import input_drift, population_stability_index


def test_psi_is_near_zero_for_draws_of_one_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    reference = rng.normal(0, 1, 20_000)
    assert population_stability_index(reference, rng.normal(0, 1, 20_000)) < 0.01
    small, large = (
        population_stability_index(reference, rng.normal(shift, 1, 20_000)) for shift in (0.3, 1.5)
    )
    assert 0.05 < small < 0.25 < large


def test_psi_by_hand_on_two_bins():
    expected, actual = np.array([0.0, 0.0, 1.0, 1.0]), np.array([0.0, 1.0, 1.0, 1.0])
    # one edge at 0.5 (quantiles of expected collapse to it): shares (0.5, 0.5) against (0.25, 0.75)
    value = (0.25 - 0.5) * np.log(0.25 / 0.5) + (0.75 - 0.5) * np.log(0.75 / 0.5)
    assert population_stability_index(expected, actual, bins=2) == pytest.approx(value)


def test_psi_is_none_without_finite_values_and_inputs_pair_by_name():
    assert population_stability_index(np.array([np.nan]), np.array([1.0])) is None
    drift = input_drift({"a": np.arange(10.0), "b": np.arange(10.0)}, {"a": np.arange(10.0)})
    assert set(drift) == {"a"} and drift["a"] == pytest.approx(0.0)
