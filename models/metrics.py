"""Evaluation metrics for every task type, in plain numpy (no sklearn, torch or dagster).

Training, tuning and reports share this one implementation; it follows sklearn's conventions (tied scores,
average precision, r2) and RelBench's for MAP@k, so numbers compare with published baselines.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

_RANKING = ("ranking", "link_prediction")
_METRIC_NAMES: dict[str, tuple[str, ...]] = {
    "binary_classification": ("auroc", "auprc", "accuracy", "f1", "log_loss"),
    "regression": ("mae", "rmse", "r2"),
    "forecasting": ("mae", "rmse", "r2"),
    "multiclass_classification": ("accuracy", "macro_f1", "log_loss"),
    "multilabel_classification": ("auroc", "auprc", "f1", "accuracy"),
    "ranking": ("map@{k}", "recall@{k}", "precision@{k}", "ndcg@{k}"),
    "link_prediction": ("map@{k}", "recall@{k}", "precision@{k}", "ndcg@{k}"),
}
TASK_TYPES = tuple(_METRIC_NAMES)
_DEFAULT_K = 10
TUNE_METRICS: dict[str, str] = {
    "binary_classification": "auroc",
    "regression": "mae",
    "forecasting": "mae",
    "multiclass_classification": "accuracy",
    "multilabel_classification": "auprc",
    "ranking": f"map@{_DEFAULT_K}",
    "link_prediction": f"map@{_DEFAULT_K}",
}
_MINIMISE = frozenset({"mae", "rmse", "log_loss"})
_MAXIMISE = frozenset(
    {"auroc", "auprc", "accuracy", "f1", "macro_f1", "r2", "map", "recall", "precision", "ndcg"}
)
_EPS = 1e-7  # probabilities are clipped to [_EPS, 1 - _EPS] for log_loss
_NAN = float("nan")


def tune_metric(task_type: str, k: int = _DEFAULT_K) -> str:
    """The metric hyperparameter search optimises for a task type (ranking ones carry @k)."""
    _check_task(task_type)
    return f"map@{_check_k(k)}" if task_type in _RANKING else TUNE_METRICS[task_type]


def metric_direction(name: str) -> str:
    """'minimize' for errors and losses, 'maximize' otherwise; '@k' suffixes are parsed off."""
    base, at, k = name.partition("@")
    if (at and not k.isdigit()) or base not in _MINIMISE | _MAXIMISE:
        known = sorted(_MINIMISE | _MAXIMISE)
        raise ValueError(f"unknown metric {name!r}; known: {known} (ranking ones as e.g. 'map@10')")
    return "minimize" if base in _MINIMISE else "maximize"


def is_better(name: str, new: float, old: float | None) -> bool:
    """Whether `new` strictly improves on `old`; a NaN `new` never does, anything beats None or NaN."""
    direction = metric_direction(name)
    if new is None or math.isnan(new):
        return False
    if old is None or math.isnan(old):
        return True
    return new < old if direction == "minimize" else new > old


def compute_metrics(task_type: str, y_true, y_pred, *, k: int = _DEFAULT_K) -> dict[str, float]:
    """All metrics of a task type. Empty input, or non-finite classification scores, give NaN metrics."""
    _check_task(task_type)
    if task_type in _RANKING:
        return _ranking(task_type, y_true, y_pred, _check_k(k))
    return _DENSE[task_type](task_type, np.asarray(y_true), np.asarray(y_pred))


def _check_task(task_type: str) -> None:
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task type {task_type!r}; known: {', '.join(TASK_TYPES)}")


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _expect(task: str, what: str, a: np.ndarray, ndims: tuple[int, ...], shape_hint: str) -> None:
    if a.ndim not in ndims:
        raise ValueError(f"{task}: {what} must be {shape_hint}, got shape {a.shape}")


def _same_length(task: str, y, p, *, whole_shape: bool = False) -> None:
    if len(y) != len(p):
        raise ValueError(f"{task}: y_true has {len(y)} rows but y_pred has {len(p)}")
    if whole_shape and y.shape != p.shape:
        raise ValueError(f"{task}: y_true has shape {y.shape} but y_pred has shape {p.shape}")


def _binary_labels(task: str, y: np.ndarray) -> np.ndarray:
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError(f"{task}: y_true must hold only 0/1 labels, got values {np.unique(y)[:10]}")
    return y.astype(bool)


def _probabilities(task: str, p: np.ndarray) -> np.ndarray:
    p = p.astype(np.float64)
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError(f"{task}: y_pred must be probabilities in [0, 1] (logits? apply sigmoid/softmax)")
    return p


def _integral(a: np.ndarray) -> bool:
    """Integer dtype, or floats that are all whole numbers (labels read back from a nullable column)."""
    return a.dtype.kind in "iub" or (a.dtype.kind == "f" and bool(np.all(np.mod(a, 1) == 0)))


def _nan_metrics(task: str, k: int = _DEFAULT_K) -> dict[str, float]:
    return {name.format(k=k): _NAN for name in _METRIC_NAMES[task]}


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney U with average ranks for ties (= sklearn roc_auc_score); NaN with one class."""
    n_pos = int(y.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return _NAN
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2
    rank_sum = average_rank[inverse.ravel()][y].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _auprc(y: np.ndarray, s: np.ndarray) -> float:
    """Step-wise average precision over distinct thresholds (= sklearn average_precision_score)."""
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        return _NAN
    order = np.argsort(-s, kind="stable")
    last_of_tie = np.r_[np.flatnonzero(np.diff(s[order])), y.size - 1]
    true_pos = np.cumsum(y[order])[last_of_tie]
    precision = true_pos / (last_of_tie + 1)
    return float(np.sum(np.diff(true_pos, prepend=0) / n_pos * precision))


def _f1(y: np.ndarray, hard: np.ndarray) -> float:
    """F1 of boolean arrays (micro over all entries); 0 when there are no positives at all."""
    tp = np.count_nonzero(y & hard)
    denominator = 2 * tp + np.count_nonzero(y ^ hard)
    return float(2 * tp / denominator) if denominator else 0.0


def _log_loss(p_true_class: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(p_true_class, _EPS, 1 - _EPS))))


def _binary(task: str, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    _expect(task, "y_true", y, (1,), "1-D (n,) 0/1 labels")
    _expect(task, "y_pred", p, (1,), "1-D (n,) scores")
    _same_length(task, y, p)
    y = _binary_labels(task, y)
    if not y.size or not np.isfinite(p).all():
        return _nan_metrics(task)
    p = _probabilities(task, p)
    hard = p >= 0.5
    return {
        "auroc": _auroc(y, p),
        "auprc": _auprc(y, p),
        "accuracy": float(np.mean(hard == y)),
        "f1": _f1(y, hard),
        "log_loss": _log_loss(np.where(y, p, 1 - p)),
    }


def _regression(task: str, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    _expect(task, "y_true", y, (1, 2), "(n,) or (n, h)")
    _expect(task, "y_pred", p, (1, 2), "(n,) or (n, h)")
    _same_length(task, y, p, whole_shape=True)
    if not y.size:
        return _nan_metrics(task)
    y, p = y.astype(np.float64).ravel(), p.astype(np.float64).ravel()
    squared = (p - y) ** 2
    total = np.sum((y - y.mean()) ** 2)
    return {
        "mae": float(np.mean(np.abs(p - y))),
        "rmse": float(np.sqrt(np.mean(squared))),
        "r2": float(1 - squared.sum() / total) if total > 0 else _NAN,
    }


def _multiclass(task: str, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    _expect(task, "y_true", y, (1,), "1-D (n,) class indices")
    _expect(task, "y_pred", p, (2,), "2-D (n, C) class probabilities")
    _same_length(task, y, p)
    n_classes = p.shape[1]
    if y.size and (not _integral(y) or y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{task}: y_true must be integer class indices in [0, {n_classes})")
    if not y.size or not np.isfinite(p).all():
        return _nan_metrics(task)
    y, p = y.astype(np.int64), _probabilities(task, p)
    hard = p.argmax(axis=1)
    true_pos = np.bincount(y[hard == y], minlength=n_classes)
    support = np.bincount(y, minlength=n_classes) + np.bincount(hard, minlength=n_classes)
    seen = support > 0  # like sklearn: classes present in y_true or predicted
    return {
        "accuracy": float(np.mean(hard == y)),
        "macro_f1": float(np.mean(2 * true_pos[seen] / support[seen])),
        "log_loss": _log_loss(p[np.arange(y.size), y]),
    }


def _multilabel(task: str, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    _expect(task, "y_true", y, (2,), "2-D (n, L) 0/1 labels")
    _expect(task, "y_pred", p, (2,), "2-D (n, L) probabilities")
    _same_length(task, y, p, whole_shape=True)
    y = _binary_labels(task, y)
    if not y.size or not np.isfinite(p).all():
        return _nan_metrics(task)
    p = _probabilities(task, p)
    positives = y.sum(axis=0)
    labels = np.flatnonzero((positives > 0) & (positives < len(y)))  # both classes present
    hard = p >= 0.5
    return {
        "auroc": float(np.mean([_auroc(y[:, j], p[:, j]) for j in labels])) if labels.size else _NAN,
        "auprc": float(np.mean([_auprc(y[:, j], p[:, j]) for j in labels])) if labels.size else _NAN,
        "f1": _f1(y, hard),
        "accuracy": float(np.mean((hard == y).all(axis=1))),
    }


def _ranking(task: str, y_true: Sequence, y_pred, k: int) -> dict[str, float]:
    top = np.asarray(y_pred)
    _expect(task, "y_pred", top, (2,), "2-D (n, K) item ids ranked best first")
    _same_length(task, y_true, top)
    if top.shape[1] < k:
        raise ValueError(f"{task}: y_pred has {top.shape[1]} columns, fewer than k={k}")
    if top.size and not _integral(top):
        raise ValueError(f"{task}: y_pred must hold integer item ids, got dtype {top.dtype}")
    if not len(top):
        return _nan_metrics(task, k)
    hits, n_relevant = _ranking_hits(task, [np.asarray(r).ravel() for r in y_true], top[:, :k])
    keep = n_relevant > 0
    if not keep.any():
        return _nan_metrics(task, k)
    hits, n_relevant = hits[keep].astype(np.float64), n_relevant[keep]
    ranks = np.arange(1, k + 1)
    cutoff = np.minimum(n_relevant, k)
    discount = 1 / np.log2(ranks + 1)
    average_precision = (np.cumsum(hits, axis=1) / ranks * hits).sum(axis=1) / cutoff
    return {
        f"map@{k}": float(average_precision.mean()),
        f"recall@{k}": float(np.mean(hits.sum(axis=1) / n_relevant)),
        f"precision@{k}": float(np.mean(hits.sum(axis=1) / k)),
        f"ndcg@{k}": float(np.mean(hits @ discount / np.cumsum(discount)[cutoff - 1])),
    }


def _ranking_hits(task: str, relevant: list[np.ndarray], top: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) hit matrix (a repeated prediction hits once) and each row's count of distinct relevant ids."""
    n, k = top.shape
    lengths = np.fromiter((r.size for r in relevant), dtype=np.int64, count=n)
    if not lengths.any():
        return np.zeros((n, k), dtype=bool), lengths
    items = np.concatenate([*relevant, top.ravel()])
    if not _integral(items):
        raise ValueError(f"{task}: y_true rows must hold integer item ids, got dtype {items.dtype}")
    items = items.astype(np.int64) - int(items.min())
    n_ids = int(items.max()) + 1
    if n_ids * n >= 2**62:  # compact sparse ids so that row * n_ids + id fits in int64
        items = np.unique(items, return_inverse=True)[1].ravel()
        n_ids = int(items.max()) + 1
    n_rel_items = int(lengths.sum())
    relevant_keys = np.sort(np.repeat(np.arange(n), lengths) * n_ids + items[:n_rel_items])
    relevant_keys = relevant_keys[np.r_[True, np.diff(relevant_keys) != 0]]
    predicted_keys = items[n_rel_items:].reshape(n, k) + np.arange(n)[:, None] * n_ids
    found = np.minimum(np.searchsorted(relevant_keys, predicted_keys), relevant_keys.size - 1)
    order = np.argsort(predicted_keys, axis=None, kind="stable")  # stable: the first of repeats hits
    first = np.empty(order.size, dtype=bool)
    first[order] = np.r_[True, np.diff(predicted_keys.ravel()[order]) != 0]
    hits = (relevant_keys[found] == predicted_keys) & first.reshape(n, k)
    return hits, np.bincount(relevant_keys // n_ids, minlength=n)


_DENSE: dict[str, Callable[[str, np.ndarray, np.ndarray], dict[str, float]]] = {
    "binary_classification": _binary,
    "regression": _regression,
    "forecasting": _regression,
    "multiclass_classification": _multiclass,
    "multilabel_classification": _multilabel,
}
