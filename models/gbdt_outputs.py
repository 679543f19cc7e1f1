"""GBDT tasks with several outputs, one LightGBM booster group per output column.

Multilabel classification and category ranking train one binary model per category (one-vs-rest); forecasting
trains one regression model per horizon. Each column early-stops on its own validation metric, and a column
whose training labels are constant is stored as that constant instead of a model.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

__all__ = ["BINARY_OUTPUT_TASKS", "PER_OUTPUT_TASKS", "PerOutputBoosting", "check_output_rows"]

BINARY_OUTPUT_TASKS = ("multilabel_classification", "ranking")  # multi-hot 0/1 rows over the categories
PER_OUTPUT_TASKS = (*BINARY_OUTPUT_TASKS, "forecasting")


def check_output_rows(task_type: str, y: np.ndarray, outputs: int | None) -> np.ndarray:
    """Labels as float (n, outputs) rows: 0/1 per category, or one value per horizon (a 1-D forecasting label
    is a single horizon, as models/metrics.py accepts). ``outputs``: the column count fitted, if known."""
    if task_type == "forecasting":
        y = y.astype(np.float64)
        y = y[:, None] if y.ndim == 1 else y
        if y.ndim != 2:
            raise ValueError(f"forecasting labels must be (n, horizons) values, got shape {y.shape}")
    elif y.ndim != 2 or (y.size and not np.isin(y, (0, 1)).all()):
        raise ValueError(f"{task_type} labels must be 2-D 0/1 rows (n, labels), got shape {y.shape}")
    if outputs is not None and y.shape[1] != outputs:
        raise ValueError(f"{task_type} labels have {y.shape[1]} columns but the model has {outputs} outputs")
    return y.astype(np.float64)


class PerOutputBoosting:
    """The per-output half of `models.gbdt.GBDTModel` (which inherits it): one booster group per output
    column. Uses the model's ``config``, ``task_type`` and ``boost_members``."""

    def fit_per_output(
        self, train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
        sample_weight: np.ndarray | None,
    ) -> None:  # fmt: skip
        """Categories early-stop on their validation log loss (always defined, unlike AUROC on a category that
        validation never sets); horizons on the validation MAE of their clamped output (the tune metric)."""
        self.boosters, self.best_iterations, self.best_scores, self.constants = [], [], [], []
        binary = self.task_type in BINARY_OUTPUT_TASKS
        percentiles = self.config.clamp_percentiles
        if not binary and percentiles is not None and len(train_y):
            low, high = np.percentile(train_y, percentiles, axis=0)
            self.horizon_clamps = [(float(a), float(b)) for a, b in zip(low, high, strict=True)]
        for column in range(train_y.shape[1]):
            target = train_y[:, column]
            if not len(target) or target.min() == target.max():
                self.constants.append(float(target[0]) if len(target) else 0.0)
                continue
            self.constants.append(None)
            train_set = lgb.Dataset(train_x, target, weight=sample_weight, free_raw_data=False)
            val_set = lgb.Dataset(val_x, val_y[:, column], reference=train_set)
            if binary:
                params = {"objective": "binary", "metric": "binary_logloss"}
                self.boost_members(params, train_set, val_set, "binary_logloss", higher_better=False)
            else:
                clamp = self.horizon_clamps[column] if self.horizon_clamps else None
                self.boost_members(
                    {}, train_set, val_set, "mae", False, _clamped_mae(val_y[:, column], clamp)
                )

    def predict_per_output(self, matrix: np.ndarray) -> np.ndarray:
        """(n, outputs) raw outputs: probabilities per category, or values per horizon (before any clamp)."""
        members = max(1, self.config.ensemble_size)
        columns, learned = [], 0
        for constant in self.constants:
            if constant is not None:
                columns.append(np.full(len(matrix), constant))
                continue
            chosen = range(learned, learned + members)
            outputs = [
                self.boosters[i].predict(matrix, num_iteration=self.best_iterations[i]) for i in chosen
            ]
            columns.append(np.mean(outputs, axis=0))
            learned += members
        return np.stack(columns, axis=1) if columns else np.zeros((len(matrix), 0))


def _clamped_mae(truth: np.ndarray, clamp: tuple[float, float] | None):
    def evaluate(raw: np.ndarray, data: lgb.Dataset) -> tuple[str, float, bool]:
        predicted = np.clip(raw, *clamp) if clamp is not None else raw
        return "mae", float(np.mean(np.abs(predicted - truth))), False

    return evaluate
