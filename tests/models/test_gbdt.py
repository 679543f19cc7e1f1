"""The LightGBM baseline: it learns clear signals, clamps regression outputs, round-trips through disk."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from models.gbdt import GBDTConfig, GBDTModel, fit_gbdt_for_task
from models.metrics import compute_metrics
from relational.keys import NODE_ID
from relational.pql.anchors import AnchorPlan
from relational.pql.training_table import build_training_table
from stores.atomic import write_atomically
from tests.models.test_propositional import SMALL
from tests.support.fake_db import write_fake_db
from tests.support.pql_helpers import in_memory_graph
from training.trial import run_gbdt_trial

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


def horizons(frame: pl.DataFrame, signal: np.ndarray, seed: int) -> np.ndarray:
    """Three forecast horizons on different scales: signal, 10 * noise_a, 100 + signal - noise_a (+ noise)."""
    noise_a = frame["noise_a"].to_numpy()
    jitter = np.random.default_rng(seed).normal(scale=0.1, size=(signal.size, 3))
    return np.stack([signal, 10 * noise_a, 100 + signal - noise_a], axis=1) + jitter


def test_forecasting_learns_every_horizon_far_better_than_its_mean() -> None:
    (train_x, train_s), (val_x, val_s), (test_x, test_s) = (synthetic(1200, seed) for seed in (0, 1, 2))
    train_y, test_y = horizons(train_x, train_s, 3), horizons(test_x, test_s, 5)
    model, metrics = fit_gbdt_for_task(
        "forecasting", (train_x, train_y), (val_x, horizons(val_x, val_s, 4)), (test_x, test_y), FAST
    )
    predicted = model.predict(test_x)
    assert predicted.shape == (test_x.height, 3) and predicted.dtype == np.float64
    assert model.constants == [None, None, None] and len(model.boosters) == 3
    assert model.booster.params["objective"] == "l1"  # MAE is the forecasting tune metric
    assert set(metrics["test"]) == {"mae", "rmse", "r2"}
    baseline = np.mean(np.abs(test_y - train_y.mean(axis=0)))  # each horizon's training mean
    assert metrics["test"]["mae"] < 0.25 * baseline
    for horizon in range(3):
        error = np.mean(np.abs(predicted[:, horizon] - test_y[:, horizon]))
        assert error < 0.35 * np.mean(np.abs(test_y[:, horizon] - train_y[:, horizon].mean()))


def test_forecasting_clamps_each_horizon_to_its_own_training_percentiles() -> None:
    train_x, train_s = synthetic(1000, 0)
    val_x, val_s = synthetic(300, 1)
    heavy = lambda s: np.stack([np.exp(2 * s), -50 * np.exp(2 * s)], axis=1)  # noqa: E731
    squared = GBDTConfig(**{**FAST.to_dict(), "objective": "l2"})
    model = GBDTModel(squared).fit(train_x, heavy(train_s), val_x, heavy(val_s), "forecasting")
    low, high = np.percentile(heavy(train_s), [2, 98], axis=0)
    assert np.allclose(model.horizon_clamps, np.stack([low, high], axis=1))
    extreme = pl.DataFrame({"signal": [-50.0, 0.0, 50.0], "noise_a": [0.0] * 3, "noise_b": [0.0] * 3})
    predicted = model.predict(extreme)
    assert predicted[2, 0] == pytest.approx(high[0]) and predicted[2, 1] == pytest.approx(low[1])
    values = model.predict(val_x)
    assert (low <= values).all() and (values <= high).all()
    unclamped = GBDTModel(GBDTConfig(**{**squared.to_dict(), "clamp_percentiles": None}))
    unclamped.fit(train_x, heavy(train_s), val_x, heavy(val_s), "forecasting")
    assert unclamped.horizon_clamps is None and unclamped.predict(extreme)[2, 0] > high[0]


def test_forecasting_takes_a_1d_label_as_one_horizon_and_checks_horizon_counts() -> None:
    x, s = synthetic(300, 0)
    model, metrics = fit_gbdt_for_task("forecasting", (x, s), (x, s), None, FAST)
    assert model.predict(x).shape == (300, 1) and model.encode_labels(s).shape == (300, 1)
    assert np.isfinite(metrics["val"]["mae"])
    with pytest.raises(ValueError, match="validation labels have 2 columns, training ones 1"):
        GBDTModel(FAST).fit(x, s, x, np.stack([s, s], axis=1), "forecasting")
    with pytest.raises(ValueError, match="1 outputs"):
        model.encode_labels(np.stack([s, s], axis=1))


def categories(frame: pl.DataFrame, signal: np.ndarray) -> np.ndarray:
    """Multi-hot rows over 7 categories: 0-4 = the quintile bin of signal, 5 = noise_a > 0.5, 6 never set."""
    rows = np.zeros((signal.size, 7), dtype=np.uint8)
    rows[np.arange(signal.size), np.digitize(signal, [-0.84, -0.25, 0.25, 0.84])] = 1
    rows[:, 5] = frame["noise_a"].to_numpy() > 0.5
    return rows


def test_ranking_puts_the_relevant_categories_first_far_above_popularity() -> None:
    (train_x, train_s), (val_x, val_s), (test_x, test_s) = (synthetic(1500, seed) for seed in (0, 1, 2))
    train_y, test_y = categories(train_x, train_s), categories(test_x, test_s)
    config = GBDTConfig(**{**FAST.to_dict(), "top_k": 3})
    model, metrics = fit_gbdt_for_task(
        "ranking", (train_x, train_y), (val_x, categories(val_x, val_s)), (test_x, test_y), config
    )
    ranked = model.predict(test_x)
    assert ranked.shape == (test_x.height, 3) and ranked.dtype == np.int64
    assert ((ranked >= 0) & (ranked < 7)).all() and (np.diff(np.sort(ranked, axis=1)) > 0).all()
    assert model.constants == [None] * 6 + [0.0] and len(model.boosters) == 6  # one binary model each
    assert set(metrics["test"]) == {"map@3", "recall@3", "precision@3", "ndcg@3"}
    truth = model.encode_labels(test_y)
    assert [row.tolist() for row in truth[:5]] == [np.flatnonzero(row).tolist() for row in test_y[:5]]
    popular = np.argsort(-train_y.sum(axis=0), kind="stable")[:3]
    baseline = compute_metrics("ranking", truth, np.tile(popular, (test_x.height, 1)), k=3)["map@3"]
    assert metrics["test"]["map@3"] > 0.9 and metrics["test"]["map@3"] > baseline + 0.4


def test_ranking_with_fewer_categories_than_top_k_scores_the_missing_ranks_as_misses() -> None:
    (train_x, train_s), (val_x, val_s) = synthetic(600, 0), synthetic(200, 1)
    model, metrics = fit_gbdt_for_task(
        "ranking", (train_x, multilabel(train_s)), (val_x, multilabel(val_s)), None, FAST
    )  # top_k 10, 3 categories
    ranked = model.predict(val_x)
    assert ranked.shape == (200, 3) and ranked[:, 2].tolist() == [2] * 200  # the never-set category last
    padded = np.pad(ranked, ((0, 0), (0, 7)), constant_values=-1)
    expected = compute_metrics("ranking", model.encode_labels(multilabel(val_s)), padded, k=10)
    assert metrics["val"] == expected and set(expected) == {"map@10", "recall@10", "precision@10", "ndcg@10"}
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        GBDTModel(GBDTConfig(top_k=0)).fit(train_x, multilabel(train_s), val_x, multilabel(val_s), "ranking")


@pytest.mark.parametrize(
    ("task_type", "ensemble_size"),
    [("binary_classification", 1), ("regression", 1), ("multiclass_classification", 1), ("regression", 3),
     ("multilabel_classification", 2), ("forecasting", 2), ("ranking", 1)],
)  # fmt: skip
def test_save_and_load_give_identical_predictions(tmp_path, task_type: str, ensemble_size: int) -> None:
    train_x, train_s = synthetic(600, 0)
    val_x, val_s = synthetic(200, 1)
    labels = {
        "binary_classification": lambda s: (s > 0).astype(int),
        "regression": lambda s: 2 * s + 1,
        "multiclass_classification": lambda s: np.digitize(s, [-0.5, 0.5]),
        "multilabel_classification": multilabel,
        "forecasting": lambda s: np.stack([2 * s + 1, np.exp(s)], axis=1),
        "ranking": multilabel,
    }[task_type]
    config = GBDTConfig(**{**FAST.to_dict(), "ensemble_size": ensemble_size, "top_k": 2})
    model = GBDTModel(config).fit(train_x, labels(train_s), val_x, labels(val_s), task_type)
    outputs = sum(c is None for c in model.constants) if model.constants is not None else 1
    assert len(model.boosters) == ensemble_size * outputs
    path = tmp_path / "models" / "gbdt.json"
    write_atomically(path, model.to_bytes())
    assert [p.name for p in path.parent.iterdir()] == ["gbdt.json"]  # no temporary file left behind
    loaded = GBDTModel.load(path)
    assert np.array_equal(loaded.predict(val_x), model.predict(val_x))
    assert loaded.feature_names == model.feature_names and loaded.task_type == task_type
    assert loaded.feature_importance() == model.feature_importance()
    assert loaded.config == model.config and loaded.horizon_clamps == model.horizon_clamps


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


@pytest.mark.parametrize("task_type", ["link_prediction", "nope"])
def test_unsupported_task_types_are_rejected(task_type: str) -> None:
    x, s = synthetic(50, 0)
    with pytest.raises(ValueError, match="the GBDT baseline supports"):
        GBDTModel(FAST).fit(x, s, x, s, task_type)


def test_predict_before_fit_explains() -> None:
    with pytest.raises(ValueError, match="not fitted"):
        GBDTModel().predict(pl.DataFrame({"a": [1.0]}))


SHOP_QUERIES = {
    "forecasting": "PREDICT COUNT(orders.*, 0, 10, days) FORECAST 3 TIMEFRAMES FOR EACH users.user_id",
    "ranking": "PREDICT LIST_DISTINCT(orders.store_id, 0, 30, days) CLASSIFY FOR EACH users.user_id",
}
SHOP_START, SHOP_DAY = 1704067200, 86400  # 2024-01-01, the fake shop's first day
SHOP_PLAN = AnchorPlan(
    timestamps={split: [SHOP_START + SHOP_DAY * day for day in days]
                for split, days in (("train", (30, 60)), ("val", (100,)), ("test", (140,)))}
)  # fmt: skip


@pytest.mark.parametrize("task_type", ["forecasting", "ranking"])
def test_run_gbdt_trial_trains_on_a_fake_shop_training_table(tmp_path, task_type: str) -> None:
    """Forecasting: the compiler's list of horizon values per row; ranking: each user's list of stores (list
    labels as a multicategorical RANK TOP K target has them), ranked top 2 of 3."""
    schema, tables = in_memory_graph(write_fake_db(tmp_path / "shop"))
    table = build_training_table(SHOP_QUERIES[task_type], schema, tables, SHOP_PLAN).table
    assert isinstance(table.schema["label"], pl.List) and table.filter(pl.col("split") == "test").height
    keys = tables["users"].select("user_id", NODE_ID)
    config = GBDTConfig(n_estimators=10, min_child_samples=5, threads=1)
    result = run_gbdt_trial(tables, schema, "users", keys, table, task_type, config, features=SMALL,
                            freeze_validation=True, top_k=2)  # fmt: skip
    model = result.model
    missing = model.predict(pl.DataFrame({name: [None] for name in model.feature_names}))
    assert result.train_rows == table.filter(pl.col("split") == "train").height
    if task_type == "forecasting":
        assert set(result.metrics["test"]) == {"mae", "rmse", "r2"} and missing.shape == (1, 3)
        assert len(model.horizon_clamps) == 3 and np.isfinite(result.metrics["val"]["mae"])
    else:
        assert set(result.metrics["val"]) == set(result.metrics["val_fresh"]) == {
            "map@2", "recall@2", "precision@2", "ndcg@2"
        }  # fmt: skip
        assert model.config.top_k == 2 and missing.shape == (1, 2) and missing.dtype == np.int64
        assert model.classes_.tolist() == ["east", "north", "south"]
        assert 0.0 <= result.metrics["test"]["map@2"] <= 1.0
