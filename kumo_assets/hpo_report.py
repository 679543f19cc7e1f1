"""What a study shows in the UI: a leaderboard, the best trial, and plots (history, importances, curves).

The summary is also written to ``<graph>/hpo/<query>/summary.json`` on the data plane, which the
``best_model`` asset reads to find the study.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import optuna
from dagster import MetadataValue
from optuna.trial import TrialState

from kumo_assets.ingest import markdown_table
from training.studies import dashboard_hint
from training.study_setup import StudyContext

__all__ = ["plots", "study_metadata"]


def study_metadata(context: StudyContext, summary: dict[str, Any]) -> dict[str, MetadataValue]:
    rows = [[row["number"], row["state"], row["family"] or "", _fmt(row["value"]), _fmt(row["seconds"], 1),
             row["instance_type"] or "", _fmt(row["cost_usd"], 4), _short(row["params"])]
            for row in summary["leaderboard"]]  # fmt: skip
    metadata = {
        "study": MetadataValue.text(context.name),
        "storage": MetadataValue.text(context.storage_url),
        "dashboard": MetadataValue.text(dashboard_hint(context.storage_url)),
        "metric": MetadataValue.text(f"{summary['metric']} ({summary['direction']})"),
        "trials": MetadataValue.json(summary["states"]),
        "leaderboard": MetadataValue.md(markdown_table(
            ["trial", "state", "family", summary["metric"], "seconds", "instance", "cost $", "params"], rows)),
    }  # fmt: skip
    if summary["best"] is not None:
        metadata["best_value"] = MetadataValue.float(float(summary["best"]["value"]))
        metadata["best_params"] = MetadataValue.json(summary["best"]["params"])
    if summary.get("within_noise"):
        noise = summary["within_noise"]
        metadata["validation_noise"] = MetadataValue.text(
            f"{noise['trials']} of {noise['complete']} complete trials score inside the best trial's 95% interval "
            f"({noise['low']:.4f} .. {noise['high']:.4f}, {noise['entities']} validation entities resampled): "
            "the validation rows cannot rank those"
        )
    blend = summary.get("family_blend")
    if blend:
        members = ", ".join(f"{name} {value:.4f}" for name, value in blend["members"].items())
        verdict = "beats" if blend["blend_is_better"] else "does not beat"
        metadata["family_blend"] = MetadataValue.text(
            f"validation {blend['metric']}: {members}; their blend {blend['blend']:.4f} {verdict} the better one"
        )
    for name, image in plots(context.study).items():
        metadata[name] = MetadataValue.md(f"![{name}](data:image/png;base64,{image})")
    return metadata


def _fmt(value, digits: int = 4) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _short(params: dict) -> str:
    keep = ("conv", "channels", "layers", "aggr", "lr", "batch_size", "fanouts", "epochs", "gbdt_leaves")
    return ", ".join(f"{name}={_compact(params[name])}" for name in keep if name in params)


def _compact(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value).replace(" ", "")


def plots(study: optuna.Study) -> dict[str, str]:
    """PNG plots as base64: optimisation history, parameter importances (3+ complete trials), learning curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    complete = [trial for trial in study.get_trials(deepcopy=False) if trial.state == TrialState.COMPLETE]
    images: dict[str, str] = {}
    if complete:
        figure, axes = plt.subplots(figsize=(5, 3))
        values = [trial.value for trial in complete]
        best = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
        running = [best(values[: index + 1]) for index in range(len(values))]
        axes.scatter([trial.number for trial in complete], values, s=12, label="trial")
        axes.step(
            [trial.number for trial in complete], running, where="post", color="C1", label="best so far"
        )
        axes.set_xlabel("trial"), axes.set_ylabel(study.user_attrs.get("metric", "value")), axes.legend()
        images["optimisation_history"] = _png(figure, plt)
    if len(complete) >= 3:
        try:
            importances = optuna.importance.get_param_importances(study)
        except (RuntimeError, ValueError):
            importances = {}
        if importances:
            figure, axes = plt.subplots(figsize=(5, 3))
            names = list(importances)[::-1]
            axes.barh(names, [importances[name] for name in names])
            axes.set_xlabel("importance (fANOVA)")
            images["parameter_importances"] = _png(figure, plt)
    curves = [trial for trial in study.get_trials(deepcopy=False) if trial.intermediate_values]
    if curves:
        figure, axes = plt.subplots(figsize=(5, 3))
        for trial in curves:
            steps = sorted(trial.intermediate_values)
            axes.plot(steps, [trial.intermediate_values[step] for step in steps], marker=".", alpha=0.7,
                      linestyle="--" if trial.state == TrialState.PRUNED else "-")  # fmt: skip
        axes.set_xlabel("epoch"), axes.set_ylabel("validation " + study.user_attrs.get("metric", "value"))
        images["learning_curves"] = _png(figure, plt)
    return images


def _png(figure, plt) -> str:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()
