"""Pictures of a study and of a model, as PNG bytes, drawn by the libraries that already draw them.

Study pictures come from `optuna.visualization.matplotlib` (optimisation history, parameter importances,
learning curves); model pictures from scikit-learn's displays (ROC, precision-recall, calibration) and
matplotlib (residuals, label histogram). Callers decide where the bytes go (the UI stores them on the
data plane); nothing here knows about Dagster.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable

import numpy as np
import optuna
from optuna.trial import TrialState

__all__ = ["label_histogram", "model_pictures", "study_pictures"]

# inches at 100 dpi: 500 x 310 pixels, inside the value column of an asset's page at 1600 pixels wide even
# beside a long key such as `parameter_importances` (540 pixels ran 20 past the page's right edge there)
SIZE = (5.0, 3.1)
DPI = 100


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(figure) -> bytes:
    plt = _pyplot()
    figure.set_size_inches(*SIZE)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    plt.close(figure)
    return buffer.getvalue()


def _draw(plot: Callable[[], object]) -> bytes | None:
    """Run an optuna/scikit-learn plot call and return its figure as PNG; None when it has nothing to draw."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib backend experimental on every call
        try:
            drawn = plot()
        except (ValueError, RuntimeError, ZeroDivisionError):
            return None
    figure = getattr(drawn, "figure_", None) or getattr(drawn, "figure", None)
    return _png(figure) if figure is not None else None


def study_pictures(study: optuna.Study, metric: str) -> dict[str, bytes]:
    """Optimisation history (any complete trial), parameter importances (3+ complete trials, fANOVA) and
    learning curves (trials that reported per-epoch validation values)."""
    from optuna.visualization import matplotlib as optuna_plots

    trials = study.get_trials(deepcopy=False)
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    pictures: dict[str, bytes | None] = {}
    if complete:
        pictures["optimisation_history"] = _draw(
            lambda: _integer_x(
                optuna_plots.plot_optimization_history(study, target_name=f"validation {metric}")
            )
        )
    if len(complete) >= 3:
        pictures["parameter_importances"] = _draw(lambda: optuna_plots.plot_param_importances(study))
    if any(trial.intermediate_values for trial in trials):
        pictures["learning_curves"] = _draw(lambda: _learning_curves(optuna_plots, study, metric))
    return {name: png for name, png in pictures.items() if png is not None}


def _integer_x(axes):
    """Trial numbers and epochs are whole: no 0.5 ticks when a study has two trials or a trial two epochs."""
    from matplotlib.ticker import MaxNLocator

    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    return axes


def _learning_curves(optuna_plots, study: optuna.Study, metric: str):
    axes = _integer_x(optuna_plots.plot_intermediate_values(study))
    axes.set_xlabel("epoch")
    axes.set_ylabel(f"validation {metric}")
    legend = axes.get_legend()
    if legend is not None and len(legend.get_texts()) > 12:
        legend.remove()  # one entry per trial stops being readable past a dozen
    return axes


def model_pictures(task_type: str, labels: np.ndarray, outputs: np.ndarray, split: str) -> dict[str, bytes]:
    """ROC, precision-recall and calibration for a binary task; residuals for a regression; else nothing.

    ``outputs`` are what the model's metrics read: probabilities of the positive class, or predictions.
    """
    labels, outputs = np.asarray(labels), np.asarray(outputs, dtype=float)
    if outputs.ndim == 2 and outputs.shape[1] == 2:
        outputs = outputs[:, 1]  # (negative, positive) probabilities: the positive class's
    if task_type == "binary_classification" and len(np.unique(labels)) == 2:
        from sklearn.calibration import CalibrationDisplay
        from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

        name = f"{split} rows"
        return {
            "roc_curve": _draw(lambda: RocCurveDisplay.from_predictions(labels, outputs, name=name,
                                                                        plot_chance_level=True)),
            "precision_recall": _draw(lambda: PrecisionRecallDisplay.from_predictions(
                labels, outputs, name=name, plot_chance_level=True)),
            "calibration": _draw(lambda: CalibrationDisplay.from_predictions(labels, outputs, n_bins=10,
                                                                             strategy="quantile", name=name)),
        }  # fmt: skip
    if task_type == "regression":
        return {"residuals": _residuals(labels.astype(float), outputs, split)}
    return {}


def _residuals(labels: np.ndarray, predictions: np.ndarray, split: str) -> bytes:
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2)
    left.scatter(predictions, labels, s=6, alpha=0.4)
    low, high = float(min(labels.min(), predictions.min())), float(max(labels.max(), predictions.max()))
    left.plot([low, high], [low, high], color="grey", linestyle="--", label="perfect")
    left.set_xlabel("prediction"), left.set_ylabel("label"), left.legend(), left.set_title(f"{split} rows")
    right.hist(labels - predictions, bins=40)
    right.set_xlabel("label - prediction"), right.set_ylabel("rows"), right.set_title("residuals")
    return _png(figure)


def label_histogram(labels_by_split: dict[str, np.ndarray], task_type: str) -> bytes | None:
    """The label distribution per split: bars of class shares, or a histogram of a numeric target."""
    plt = _pyplot()
    splits = {split: np.asarray(values) for split, values in labels_by_split.items() if len(values)}
    if not splits:
        return None
    figure, axes = plt.subplots()
    if task_type == "regression":
        values = np.concatenate([values.astype(float) for values in splits.values()])
        bins = np.histogram_bin_edges(values[np.isfinite(values)], bins=40)
        for split, values in splits.items():
            axes.hist(
                values.astype(float), bins=bins, histtype="step", linewidth=1.5, density=True, label=split
            )
        axes.set_xlabel("label"), axes.set_ylabel("density")
    else:
        classes = sorted({str(value) for values in splits.values() for value in values.tolist()})[:20]
        width = 0.8 / len(splits)
        for index, (split, values) in enumerate(splits.items()):
            text = np.asarray([str(value) for value in values.tolist()])
            shares = [float(np.mean(text == name)) for name in classes]
            axes.bar(np.arange(len(classes)) + index * width, shares, width=width, label=split)
        axes.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, classes)
        axes.set_xlabel("label"), axes.set_ylabel("share of rows")
    axes.legend(title="split")
    return _png(figure)
