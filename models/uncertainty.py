"""How far a metric can move by chance: bootstrap intervals that resample entities, not rows.

A training table repeats each entity at many anchors (rel-f1's driver-dnf test: 702 rows, 42 drivers), and
rows of one entity share most of what the model sees, so resampling rows understates the noise. Resampling
whole entities (a cluster bootstrap) gives the interval a reader needs to judge "72.6 vs 75.3 AUROC".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from models.metrics import compute_metrics, metric_direction, tune_metric

__all__ = [
    "MetricInterval",
    "ScoredRows",
    "grouped_bootstrap",
    "metric_intervals",
    "paired_difference",
    "paired_win_share",
]

_RESAMPLED_ROWS_BUDGET = 20_000_000  # rows a model summary's intervals resample in all, per split
_MIN_VALID_SHARE = 0.5  # below this share of defined resamples (e.g. one class only) the interval is nan


@dataclass
class ScoredRows:
    """One split as a metric reads it: labels, model outputs (as `compute_metrics` takes them) and the entity
    of each row, which the bootstrap resamples."""

    labels: np.ndarray | Sequence
    outputs: np.ndarray
    groups: np.ndarray

    def __post_init__(self) -> None:
        self.groups = np.asarray(self.groups)
        if not (len(self.labels) == len(self.outputs) == len(self.groups)):
            raise ValueError(f"scored rows disagree in length: {len(self.labels)} labels, "
                             f"{len(self.outputs)} outputs, {len(self.groups)} groups")  # fmt: skip

    def take(self, rows: np.ndarray) -> tuple[np.ndarray | list, np.ndarray]:
        labels = self.labels[rows] if isinstance(self.labels, np.ndarray) else [self.labels[i] for i in rows]
        return labels, self.outputs[rows]


@dataclass(frozen=True)
class MetricInterval:
    """A metric on all rows and its bootstrap percentile interval over ``groups`` resampled entities."""

    metric: str
    estimate: float
    low: float
    high: float
    std: float
    groups: int
    resamples: int
    level: float

    def to_dict(self) -> dict:
        return asdict(self)


def grouped_bootstrap(
    task_type: str,
    metric: str,
    scored: ScoredRows,
    *,
    k: int = 10,
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> MetricInterval:
    """``metric`` of ``scored`` with a ``level`` percentile interval: each resample draws as many entities as
    there are, with replacement, and keeps every row of each draw (an entity drawn twice counts twice)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    estimate = _metric(task_type, metric, scored, np.arange(len(scored.groups)), k)
    values = np.array(
        [_metric(task_type, metric, scored, rows, k) for rows in _resampled_rows(scored, resamples, seed)]
    )
    return _percentile_interval(metric, estimate, values, len(np.unique(scored.groups)), resamples, level)


def _percentile_interval(metric: str, estimate: float, values: np.ndarray, groups: int, resamples: int,
                         level: float) -> MetricInterval:  # fmt: skip
    """The interval of the finite resampled ``values``; nan bounds when too few resamples were defined."""
    values = values[np.isfinite(values)]
    if len(values) < _MIN_VALID_SHARE * resamples:
        nan = float("nan")
        return MetricInterval(metric, estimate, nan, nan, nan, groups, resamples, level)
    low, high = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return MetricInterval(
        metric, estimate, float(low), float(high), float(values.std()), groups, resamples, level
    )


def paired_win_share(task_type: str, metric: str, first: ScoredRows, second: ScoredRows, *, k: int = 10,
                     resamples: int = 1000, seed: int = 0) -> float:  # fmt: skip
    """Share of entity resamples on which ``first`` scores strictly better than ``second`` on the same rows
    (ties count half): near 0.5, the data cannot tell the two models apart."""
    if not np.array_equal(first.groups, second.groups):
        raise ValueError("paired_win_share compares two models on the same rows: their groups differ")
    better = metric_direction(metric) == "maximize"
    wins = []
    for rows in _resampled_rows(first, resamples, seed):
        a, b = _metric(task_type, metric, first, rows, k), _metric(task_type, metric, second, rows, k)
        if np.isfinite(a) and np.isfinite(b):
            wins.append(0.5 if a == b else float((a > b) == better))
    return float(np.mean(wins)) if wins else float("nan")


def paired_difference(task_type: str, metric: str, first: ScoredRows, second: ScoredRows, *, k: int = 10,
                      resamples: int = 1000, level: float = 0.95, seed: int = 0) -> MetricInterval:  # fmt: skip
    """``metric`` of ``first`` minus that of ``second`` on the same rows, with its percentile interval over
    resampled entities (both models see the same resample): above zero for a maximised metric, below for a
    minimised one, means the rows show ``first`` better beyond noise."""
    if not np.array_equal(first.groups, second.groups):
        raise ValueError("paired_difference compares two models on the same rows: their groups differ")
    whole = np.arange(len(first.groups))
    estimate = _metric(task_type, metric, first, whole, k) - _metric(task_type, metric, second, whole, k)
    values = np.array([_metric(task_type, metric, first, rows, k) - _metric(task_type, metric, second, rows, k)
                       for rows in _resampled_rows(first, resamples, seed)])  # fmt: skip
    return _percentile_interval(metric, estimate, values, len(np.unique(first.groups)), resamples, level)


def _resampled_rows(scored: ScoredRows, resamples: int, seed: int):
    """Row indices of each resample: every row of each drawn entity, as often as it was drawn."""
    _, code = np.unique(scored.groups, return_inverse=True)
    n_groups = int(code.max()) + 1 if len(code) else 0
    order = np.argsort(code, kind="stable")
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        counts = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
        yield np.repeat(order, counts[code[order]])


def _metric(task_type: str, metric: str, scored: ScoredRows, rows: np.ndarray, k: int) -> float:
    labels, outputs = scored.take(rows)
    values = compute_metrics(task_type, labels, outputs, k=k)
    if metric not in values:
        raise ValueError(f"{task_type} has no metric {metric!r}; it has {sorted(values)}")
    return float(values[metric])


def metric_intervals(task_type: str, scored: dict[str, ScoredRows], *, k: int = 10) -> dict[str, dict]:
    """The tune metric of each scored split with its 95% interval over resampled entities, as dicts (for a
    model's summary: how much of a difference between two models the evaluation rows can show). Large
    splits get fewer resamples (at least 200), so the intervals cost seconds, not minutes."""
    metric = tune_metric(task_type, k)
    return {split: grouped_bootstrap(task_type, metric, rows, k=k, resamples=summary_resamples(len(rows.groups))).to_dict()
            for split, rows in scored.items()}  # fmt: skip


def summary_resamples(rows: int) -> int:
    """1,000 resamples up to 20,000 rows, then as many as keep ~2e7 resampled rows, never under 200."""
    return int(np.clip(_RESAMPLED_ROWS_BUDGET // max(rows, 1), 200, 1000))
