"""The LightGBM baseline: it learns clear signals, clamps regression outputs, round-trips through disk."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from models.gbdt import GBDTConfig, GBDTModel, fit_gbdt_for_task

FAST = GBDTConfig(n_estimators=60, early_stopping_rounds=20, learning_rate=0.1, num_leaves=15, threads=1)


def synthetic(n: int, seed: int) -> tuple[pl.DataFrame, np.ndarray]:
    """Three noise columns plus ``signal``; missing values sprinkled in."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=n)
    frame = pl.DataFrame(
        {
            "signal": signal,
            "noise_a": rng.normal(size=n),
            "noise_b": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
            "noise_c": rng.integers(0, 5, n).astype(np.float64),
        }
    )
    return frame, signal


def test_binary_classification_learns_a_clear_signal() -> None:
    (train_x, train_s), (val_x, val_s), (test_x, test_s) = (synthetic(1500, seed) for seed in (0, 1, 2))

    def label(signal: np.ndarray, seed: int) -> np.ndarray:
        return (signal + np.random.default_rng(seed).normal(scale=0.5, size=signal.size) > 0).astype(np.int64)

    model, metrics = fit_gbdt_for_task(
        "binary_classification",
        (train_x, label(train_s, 3)),
        (val_x, label(val_s, 4)),
        (test_x, label(test_s, 5)),
        FAST,
    )
    assert metrics["val"]["auroc"] > 0.9 and metrics["test"]["auroc"] > 0.9
    assert set(metrics["test"]) == {"auroc", "auprc", "accuracy", "f1", "log_loss"}
    probabilities = model.predict(test_x)
    assert probabilities.shape == (test_x.height,) and 0 <= probabilities.min() <= probabilities.max() <= 1
    assert next(iter(model.feature_importance())) == "signal"
    assert 1 <= model.best_iteration <= FAST.n_estimators


def test_regression_outputs_are_clamped_to_training_percentiles() -> None:
    train_x, train_s = synthetic(1000, 0)
    val_x, val_s = synthetic(300, 1)
    heavy_tailed = lambda s: np.exp(2 * s)  # noqa: E731 - the top leaf's mean lies above the 98th percentile
    squared = GBDTConfig(**{**FAST.to_dict(), "objective": "l2"})
    model = GBDTModel(squared).fit(train_x, heavy_tailed(train_s), val_x, heavy_tailed(val_s), "regression")
    low, high = np.percentile(heavy_tailed(train_s), [2, 98])
    extreme = pl.DataFrame({"signal": [-50.0, 0.0, 50.0], "noise_a": [0.0] * 3, "noise_b": [0.0] * 3})
    predicted = model.predict(extreme)
    assert predicted[2] == pytest.approx(high) and low <= predicted.min()
    assert low <= model.predict(val_x).min() and model.predict(val_x).max() <= high
    unclamped = GBDTModel(GBDTConfig(**{**squared.to_dict(), "clamp_percentiles": None}))
    unclamped.fit(train_x, heavy_tailed(train_s), val_x, heavy_tailed(val_s), "regression")
    assert unclamped.predict(extreme)[2] > high


def test_regression_defaults_to_the_loss_of_its_tune_metric() -> None:
    x, s = synthetic(300, 0)
    model = GBDTModel(FAST).fit(x, s, x, s, "regression")
    assert model.booster.params["objective"] == "l1"  # MAE is the regression tune metric


def test_multiclass_maps_labels_to_class_indices() -> None:
    train_x, train_s = synthetic(1200, 0)
    val_x, val_s = synthetic(400, 1)
    to_label = lambda s: np.select([s < -0.5, s < 0.5], [10, 20], 30)  # noqa: E731
    model, metrics = fit_gbdt_for_task(
        "multiclass_classification", (train_x, to_label(train_s)), (val_x, to_label(val_s)), None, FAST
    )
    assert model.classes_.tolist() == [10, 20, 30]
    probabilities = model.predict(val_x)
    assert probabilities.shape == (400, 3) and np.allclose(probabilities.sum(axis=1), 1)
    assert metrics["val"]["accuracy"] > 0.8 and "test" not in metrics
    with pytest.raises(ValueError, match="do not occur in the training labels"):
        model.fit(train_x, to_label(train_s), val_x, np.full(400, 99), "multiclass_classification")


def multilabel(signal: np.ndarray) -> np.ndarray:
    """Label 0 = signal > 0, label 1 = |signal| > 1, label 2 never set."""
    return np.stack([signal > 0, np.abs(signal) > 1, np.zeros_like(signal, dtype=bool)], axis=1).astype(
        np.uint8
    )


def test_multilabel_learns_each_label_and_keeps_unseen_ones_constant() -> None:
    (train_x, train_s), (val_x, val_s), (test_x, test_s) = (synthetic(1200, seed) for seed in (0, 1, 2))
    model, metrics = fit_gbdt_for_task(
        "multilabel_classification",
        (train_x, multilabel(train_s)),
        (val_x, multilabel(val_s)),
        (test_x, multilabel(test_s)),
        FAST,
    )
    probabilities = model.predict(test_x)
    assert probabilities.shape == (test_x.height, 3)
    assert model.constants == [None, None, 0.0] and len(model.boosters) == 2  # no model for a constant label
    assert np.all(probabilities[:, 2] == 0.0)
    assert metrics["test"]["auroc"] > 0.9  # averaged over the labels both classes occur in
    assert set(metrics["test"]) == {"auroc", "auprc", "f1", "accuracy"}
    with pytest.raises(ValueError, match="2-D 0/1 rows"):
        model.fit(train_x, train_s > 0, val_x, multilabel(val_s), "multilabel_classification")


@pytest.mark.parametrize(
    ("task_type", "ensemble_size"),
    [("binary_classification", 1), ("regression", 1), ("multiclass_classification", 1), ("regression", 3),
     ("multilabel_classification", 2)],
)  # fmt: skip
def test_save_and_load_give_identical_predictions(tmp_path, task_type: str, ensemble_size: int) -> None:
    train_x, train_s = synthetic(600, 0)
    val_x, val_s = synthetic(200, 1)
    labels = {
        "binary_classification": lambda s: (s > 0).astype(int),
        "regression": lambda s: 2 * s + 1,
        "multiclass_classification": lambda s: np.digitize(s, [-0.5, 0.5]),
        "multilabel_classification": multilabel,
    }[task_type]
    config = GBDTConfig(**{**FAST.to_dict(), "ensemble_size": ensemble_size})
    model = GBDTModel(config).fit(train_x, labels(train_s), val_x, labels(val_s), task_type)
    assert len(model.boosters) == ensemble_size * (2 if task_type == "multilabel_classification" else 1)
    path = tmp_path / "models" / "gbdt.json"
    model.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["gbdt.json"]  # no temporary file left behind
    loaded = GBDTModel.load(path)
    assert np.array_equal(loaded.predict(val_x), model.predict(val_x))
    assert loaded.feature_names == model.feature_names and loaded.task_type == task_type
    assert loaded.feature_importance() == model.feature_importance()


def test_smoothed_early_stopping_ignores_a_lucky_round() -> None:
    from models.gbdt import _smoothed_best

    curve = np.array([0.5, 0.9, 0.5, 0.6, 0.7, 0.8, 0.85, 0.86, 0.85, 0.84])
    assert _smoothed_best(curve, higher_better=True, window=1) == 2
    assert _smoothed_best(curve, higher_better=True, window=3) == 8
    assert _smoothed_best(np.full(4, np.nan), higher_better=True, window=3) == 4


def test_columns_are_matched_by_name() -> None:
    train_x, train_s = synthetic(600, 0)
    val_x, val_s = synthetic(200, 1)
    model = GBDTModel(FAST).fit(
        train_x, (train_s > 0).astype(int), val_x, (val_s > 0).astype(int), "binary_classification"
    )
    shuffled = val_x.select(reversed(val_x.columns)).with_columns(pl.lit(1.0).alias("unknown"))
    assert np.array_equal(model.predict(shuffled), model.predict(val_x))
    assert model.predict(val_x.drop("noise_c")).shape == (200,)  # a missing column reads as missing values


@pytest.mark.parametrize("task_type", ["link_prediction", "ranking", "forecasting", "nope"])
def test_unsupported_task_types_are_rejected(task_type: str) -> None:
    x, s = synthetic(50, 0)
    with pytest.raises(ValueError, match="the GBDT baseline supports"):
        GBDTModel(FAST).fit(x, s, x, s, task_type)


def test_predict_before_fit_explains() -> None:
    with pytest.raises(ValueError, match="not fitted"):
        GBDTModel().predict(pl.DataFrame({"a": [1.0]}))
