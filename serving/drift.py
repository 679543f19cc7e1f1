"""Population stability index: how far a distribution of served scores moved from the validation one."""

from __future__ import annotations

import numpy as np

__all__ = ["input_drift", "population_stability_index"]


def population_stability_index(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float | None:
    """PSI = sum((a - e) * ln(a / e)) over ``bins`` quantile bins of ``expected`` (shares floored at 1e-4).

    Under 0.1 is usually read as stable, 0.1-0.25 as a shift worth watching, over 0.25 as a large shift.
    None when either side has no finite values.
    """
    expected = np.asarray(expected, dtype=np.float64).reshape(-1)
    actual = np.asarray(actual, dtype=np.float64).reshape(-1)
    expected, actual = expected[np.isfinite(expected)], actual[np.isfinite(actual)]
    if len(expected) == 0 or len(actual) == 0:
        return None
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
    expected_share = np.bincount(np.searchsorted(edges, expected, side="right"), minlength=len(edges) + 1)
    actual_share = np.bincount(np.searchsorted(edges, actual, side="right"), minlength=len(edges) + 1)
    e = np.maximum(expected_share / len(expected), 1e-4)
    a = np.maximum(actual_share / len(actual), 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


def input_drift(reference: dict[str, np.ndarray], current: dict[str, np.ndarray]) -> dict[str, float | None]:
    """PSI of each input column present on both sides (validation rows against served rows)."""
    return {name: population_stability_index(values, current[name]) for name, values in reference.items()
            if name in current}  # fmt: skip
