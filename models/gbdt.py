"""The feature-engineering baseline: LightGBM on propositionalised features (models/propositional.py).

It reports the GNN's metrics (models/metrics.py) and early-stops on the same tune metric, so the two model
families compare row for row on the same training table.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl

from models.gbdt_outputs import (
    PER_OUTPUT_TASKS,
    PerOutputBoosting,
    check_output_rows,
)
from models.metrics import compute_metrics, metric_direction, tune_metric

__all__ = [
    "SUPPORTED_TASK_TYPES",
    "GBDTConfig",
    "GBDTModel",
    "feature_matrix",
    "fit_gbdt_for_task",
]

SUPPORTED_TASK_TYPES = (
    "binary_classification",
    "regression",
    "multiclass_classification",
    "multilabel_classification",
    "ranking",
    "forecasting",
)
_FORMAT_VERSION = 1


@dataclass
class GBDTConfig:
    """LightGBM settings.

    objective: None = binary / multiclass, and for regression the loss of the tune metric (l1 for MAE);
        a LightGBM regression objective ("l2", "huber", "fair"...) overrides it.
    smoothing_rounds: the number of rounds kept maximises a centred moving average of the validation metric
        over this many rounds (1 = the single best round; small validation sets make that one noisy).
    ensemble_size: boosters trained with seeds seed, seed+1, ...; their predictions are averaged.
    clamp_percentiles: regression outputs (each forecast horizon's) are clipped to these percentiles of the
        training labels.
    top_k: ranking outputs the top_k categories, and its metrics are @top_k.
    threads: 0 = LightGBM's default (all cores).
    """

    num_leaves: int = 31
    learning_rate: float = 0.03
    n_estimators: int = 2000
    early_stopping_rounds: int = 100
    smoothing_rounds: int = 25
    min_child_samples: int = 40
    feature_fraction: float = 0.5
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambda_l2: float = 1.0
    max_bin: int = 255
    seed: int = 0
    # keep all n_estimators rounds, without early stopping: a refit on train + val reuses the round count its
    # selection run chose on validation, so nothing is chosen on rows it trains on
    fixed_rounds: bool = False
    ensemble_size: int = 1
    threads: int = 0
    objective: str | None = None
    clamp_percentiles: tuple[float, float] | None = (2.0, 98.0)
    top_k: int = 10

    def to_dict(self) -> dict:
        return asdict(self)


class GBDTModel(PerOutputBoosting):
    """LightGBM booster(s) with the task's label mapping, output clamp and feature names."""

    def __init__(self, config: GBDTConfig | None = None) -> None:
        self.config = config or GBDTConfig()
        self.boosters: list[lgb.Booster] = []
        self.best_iterations: list[int] = []
        self.best_scores: list[float] = []
        self.task_type: str | None = None
        self.feature_names: list[str] = []
        self.classes_: np.ndarray | None = None
        self.clamp: tuple[float, float] | None = None
        self.horizon_clamps: list[tuple[float, float]] | None = None  # forecasting: (low, high) per horizon
        # per-output tasks (models/gbdt_outputs.py): per output column, None = learned by its boosters (column
        # order, ensemble_size each), or the constant of a column whose training labels are constant
        self.constants: list[float | None] | None = None

    @property
    def booster(self) -> lgb.Booster | None:
        """The first booster (the only one unless ``ensemble_size`` > 1)."""
        return self.boosters[0] if self.boosters else None

    @property
    def best_iteration(self) -> int:
        return round(float(np.mean(self.best_iterations))) if self.best_iterations else 0

    def fit(
        self,
        train_x: pl.DataFrame,
        train_y: np.ndarray,
        val_x: pl.DataFrame,
        val_y: np.ndarray,
        task_type: str,
        sample_weight: np.ndarray | None = None,
    ) -> GBDTModel:
        """Train with early stopping on the validation set's tune metric (models/metrics.py)."""
        _check_task(task_type)
        self.task_type = task_type
        self.feature_names = list(train_x.columns)
        self.constants, self.horizon_clamps = None, None
        top_k = self.config.top_k
        if task_type == "ranking" and (not isinstance(top_k, int | np.integer) or top_k < 1):
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        train_target = self._encode_labels(np.asarray(train_y), fit=True)
        val_target = self._encode_labels(np.asarray(val_y), fit=False)
        if task_type in PER_OUTPUT_TASKS and val_target.shape[1] != train_target.shape[1]:
            columns = (val_target.shape[1], train_target.shape[1])
            raise ValueError(
                f"{task_type}: validation labels have {columns[0]} columns, training ones {columns[1]}"
            )
        self.clamp = None
        if task_type == "regression" and self.config.clamp_percentiles is not None:
            low, high = np.percentile(train_target, self.config.clamp_percentiles)
            self.clamp = (float(low), float(high))
        train_matrix = feature_matrix(train_x, self.feature_names)
        if task_type in PER_OUTPUT_TASKS:
            val_matrix = feature_matrix(val_x, self.feature_names)
            self.fit_per_output(train_matrix, train_target, val_matrix, val_target, sample_weight)
            return self
        train_set = lgb.Dataset(train_matrix, train_target, weight=sample_weight, free_raw_data=False)
        val_set = lgb.Dataset(feature_matrix(val_x, self.feature_names), val_target, reference=train_set)
        metric = tune_metric(task_type)
        higher_better = metric_direction(metric) == "maximize"

        def evaluate(raw: np.ndarray, data: lgb.Dataset) -> tuple[str, float, bool]:
            predicted = self._postprocess(np.asarray(raw).reshape(len(val_target), -1))
            return metric, float(compute_metrics(task_type, val_target, predicted)[metric]), higher_better

        self.boosters, self.best_iterations, self.best_scores = [], [], []
        self.boost_members({}, train_set, val_set, metric, higher_better, evaluate)
        return self

    def boost_members(self, extra_params: dict, train_set: lgb.Dataset, val_set: lgb.Dataset, metric: str,
                       higher_better: bool, feval=None) -> None:  # fmt: skip
        """Train ``ensemble_size`` boosters (seeds seed, seed+1, ...), each keeping the round whose smoothed
        validation ``metric`` is best; appends them to ``boosters``."""
        for member in range(max(1, self.config.ensemble_size)):
            history: dict[str, dict[str, list[float]]] = {}
            callbacks = [lgb.log_evaluation(0), lgb.record_evaluation(history)]
            if self.config.early_stopping_rounds > 0 and not self.config.fixed_rounds:
                callbacks.append(lgb.early_stopping(self.config.early_stopping_rounds, verbose=False))
            booster = lgb.train(
                {**self._params(self.config.seed + member), **extra_params},
                train_set,
                num_boost_round=self.config.n_estimators,
                valid_sets=[val_set],
                valid_names=["val"],
                feval=feval,
                callbacks=callbacks,
            )
            curve = np.asarray(history["val"][metric], dtype=np.float64)
            best = (
                len(curve)
                if self.config.fixed_rounds
                else _smoothed_best(curve, higher_better, self.config.smoothing_rounds)
            )
            self.boosters.append(booster)
            self.best_iterations.append(best)
            self.best_scores.append(float(curve[best - 1]))

    def predict(self, x: pl.DataFrame) -> np.ndarray:
        """Binary: P(label = 1); regression: clamped values; multiclass: (n, C) probabilities over classes_;
        multilabel: (n, L) probabilities per label; forecasting: (n, horizons) values, each horizon clamped;
        ranking: (n, min(top_k, L)) int64 category indices, best first. Columns are matched by name; ones the
        model knows but ``x`` lacks read as missing."""
        if not self.boosters and not self.constants:
            raise ValueError("the model is not fitted: call fit() or GBDTModel.load() first")
        matrix = feature_matrix(x, self.feature_names)
        if self.constants is not None:
            return self._postprocess(self.predict_per_output(matrix))
        outputs = [
            np.asarray(booster.predict(matrix, num_iteration=best)).reshape(x.height, -1)
            for booster, best in zip(self.boosters, self.best_iterations, strict=True)
        ]
        return self._postprocess(np.mean(outputs, axis=0))

    def feature_importance(self, kind: str = "gain") -> dict[str, float]:
        """Total gain (or split count with kind="split") per feature over the kept rounds, largest first."""
        if not self.boosters:
            return {}
        values = sum(
            booster.feature_importance(importance_type=kind, iteration=best)
            for booster, best in zip(self.boosters, self.best_iterations, strict=True)
        )
        pairs = sorted(zip(self.feature_names, values.tolist(), strict=True), key=lambda item: -item[1])
        return {name: float(value) for name, value in pairs}

    def to_bytes(self) -> bytes:
        """The model as one JSON document (boosters as text, label mapping, names); `load` reads it back."""
        return json.dumps(self.state()).encode()

    def state(self) -> dict:
        """Everything `from_state` needs, JSON-able (boosters as LightGBM's text format)."""
        if not self.boosters and not self.constants:
            raise ValueError("the model is not fitted: nothing to save")
        return {
            "format_version": _FORMAT_VERSION,
            "config": self.config.to_dict(),
            "task_type": self.task_type,
            "feature_names": self.feature_names,
            "classes": None if self.classes_ is None else self.classes_.tolist(),
            "clamp": self.clamp,
            "horizon_clamps": self.horizon_clamps,
            "constants": self.constants,
            "best_iterations": self.best_iterations,
            "best_scores": self.best_scores,
            "boosters": [booster.model_to_string(num_iteration=-1) for booster in self.boosters],
        }

    @classmethod
    def load(cls, path: str | Path) -> GBDTModel:
        return cls.from_state(json.loads(Path(path).read_text()), str(path))

    @classmethod
    def from_state(cls, state: dict, where: str = "GBDT state") -> GBDTModel:
        if state.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"{where}: unsupported GBDT model format {state.get('format_version')!r}")
        config = dict(state["config"])
        if config.get("clamp_percentiles") is not None:
            config["clamp_percentiles"] = tuple(config["clamp_percentiles"])
        model = cls(GBDTConfig(**config))
        model.task_type = state["task_type"]
        model.feature_names = state["feature_names"]
        model.classes_ = None if state["classes"] is None else np.asarray(state["classes"])
        model.clamp = None if state["clamp"] is None else tuple(state["clamp"])
        model.constants = state.get("constants")
        clamps = state.get("horizon_clamps")
        model.horizon_clamps = None if clamps is None else [tuple(pair) for pair in clamps]
        model.best_iterations = list(state["best_iterations"])
        model.best_scores = list(state["best_scores"])
        model.boosters = [lgb.Booster(model_str=text) for text in state["boosters"]]
        return model

    # ---- internals --------------------------------------------------------------------------------
    def _params(self, seed: int) -> dict:
        config = self.config
        params = {
            "num_leaves": config.num_leaves,
            "learning_rate": config.learning_rate,
            "min_child_samples": config.min_child_samples,
            "feature_fraction": config.feature_fraction,
            "bagging_fraction": config.bagging_fraction,
            "bagging_freq": config.bagging_freq if config.bagging_fraction < 1 else 0,
            "lambda_l2": config.lambda_l2,
            "max_bin": config.max_bin,
            "seed": seed,
            "deterministic": True,
            "force_col_wise": True,
            "metric": "None",
            "verbosity": -1,
        }
        if config.threads > 0:
            params["num_threads"] = config.threads
        if self.task_type == "binary_classification":
            params["objective"] = "binary"
        elif self.task_type == "multiclass_classification":
            params["objective"] = "multiclass"
            params["num_class"] = len(self.classes_)
        else:
            params["objective"] = config.objective or ("l1" if tune_metric(self.task_type) == "mae" else "l2")
        return params

    def encode_labels(self, y: np.ndarray) -> np.ndarray | list[np.ndarray]:
        """Labels as the metrics take them: class indices (over ``classes_``) for multiclass, (n, horizons)
        for forecasting, each row's relevant category indices for ranking, else as is."""
        encoded = self._encode_labels(np.asarray(y), fit=False)
        return [np.flatnonzero(row) for row in encoded] if self.task_type == "ranking" else encoded

    def evaluate(self, x: pl.DataFrame, y: np.ndarray) -> dict[str, float]:
        """The task's metrics (models/metrics.py) on ``x`` against labels ``y``, ranking ones @top_k. With
        fewer categories than top_k, the ranked lists are padded with misses (-1) to top_k."""
        return compute_metrics(self.task_type, *self.metric_inputs(x, y), k=self.config.top_k)

    def metric_inputs(self, x: pl.DataFrame, y: np.ndarray) -> tuple[np.ndarray | list, np.ndarray]:
        """Labels and predictions of ``x`` as `compute_metrics` reads them (ranking: padded to top_k)."""
        predicted, k = self.predict(x), self.config.top_k
        if self.task_type == "ranking" and predicted.shape[1] < k:
            predicted = np.pad(predicted, ((0, 0), (0, k - predicted.shape[1])), constant_values=-1)
        return self.encode_labels(y), predicted

    def _encode_labels(self, y: np.ndarray, fit: bool) -> np.ndarray:
        if self.task_type == "binary_classification":
            if y.size and not np.isin(y, (0, 1)).all():
                raise ValueError(f"binary labels must be 0/1, got values {np.unique(y)[:10]}")
            return y.astype(np.float64)
        if self.task_type == "regression":
            return y.astype(np.float64)
        if self.task_type in PER_OUTPUT_TASKS:
            return check_output_rows(
                self.task_type, y, None if self.constants is None else len(self.constants)
            )
        if fit:
            self.classes_ = np.unique(y)
        index = np.searchsorted(self.classes_, y)
        known = (index < len(self.classes_)) & (self.classes_[np.minimum(index, len(self.classes_) - 1)] == y)
        if not known.all():
            raise ValueError(f"labels {np.unique(y[~known])[:10]} do not occur in the training labels")
        return index.astype(np.float64)

    def _postprocess(self, output: np.ndarray) -> np.ndarray:
        if self.task_type == "binary_classification":
            return output[:, 0]
        if self.task_type == "regression":
            values = output[:, 0]
            return np.clip(values, *self.clamp) if self.clamp is not None else values
        if self.task_type == "forecasting" and self.horizon_clamps is not None:
            low, high = np.asarray(self.horizon_clamps).T
            return np.clip(output, low, high)
        if self.task_type == "ranking":
            order = np.argsort(-output, axis=1, kind="stable")  # ties: the lower category index first
            return order[:, : min(self.config.top_k, output.shape[1])].astype(np.int64)
        return output


def _smoothed_best(curve: np.ndarray, higher_better: bool, window: int) -> int:
    """The 1-based round whose centred moving average of the validation metric is best."""
    if window > 1 and len(curve) > 1:
        kernel = np.ones(min(window, len(curve)))
        finite = np.isfinite(curve)
        sums = np.convolve(np.where(finite, curve, 0.0), kernel, mode="same")
        counts = np.convolve(finite.astype(np.float64), kernel, mode="same")
        curve = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    if not np.isfinite(curve).any():
        return len(curve)
    return int(np.nanargmax(curve) if higher_better else np.nanargmin(curve)) + 1


def _check_task(task_type: str) -> None:
    if task_type not in SUPPORTED_TASK_TYPES:
        raise ValueError(
            f"the GBDT baseline supports {', '.join(SUPPORTED_TASK_TYPES)}; task type {task_type!r} needs the "
            "GNN (models/gnn.py)"
        )


def feature_matrix(x: pl.DataFrame, names: list[str]) -> np.ndarray:
    """Float32 matrix in the model's column order; unknown columns dropped, missing ones NaN. Filled column
    by column, so a wide frame costs one matrix of memory, not several."""
    matrix = np.full((x.height, len(names)), np.nan, dtype=np.float32)
    present = set(x.columns)
    for position, name in enumerate(names):
        if name in present:
            matrix[:, position] = x.get_column(name).cast(pl.Float32).fill_null(np.nan).to_numpy()
    return matrix


def fit_gbdt_for_task(
    task_type: str,
    train: tuple[pl.DataFrame, np.ndarray],
    val: tuple[pl.DataFrame, np.ndarray],
    test: tuple[pl.DataFrame, np.ndarray] | None = None,
    config: GBDTConfig | None = None,
    sample_weight: np.ndarray | None = None,
) -> tuple[GBDTModel, dict[str, dict[str, float]]]:
    """Fit on train, early-stop on val; return the model and {"val": metrics, "test": metrics} (each split's
    features and labels as (frame, array); test may be None)."""
    model = GBDTModel(config).fit(train[0], train[1], val[0], val[1], task_type, sample_weight)
    metrics = {}
    for split, data in (("val", val), ("test", test)):
        if data is not None:
            metrics[split] = model.evaluate(data[0], data[1])
    return model, metrics
