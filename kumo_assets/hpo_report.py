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
from kumo_assets.training import SCORED_ROWS
from models.blending import BLENDABLE, blend_report, scored_rows_from_bytes
from models.metrics import is_better
from stores.data_plane import DataPlane
from training.hpo import leaderboard
from training.studies import dashboard_hint
from training.study_setup import StudyContext

__all__ = [
    "family_blend",
    "plots",
    "read_study_summary",
    "study_metadata",
    "trials_within_noise",
    "write_study_summary",
]


def write_study_summary(context: StudyContext, data_plane: DataPlane, outcomes: list[dict]) -> dict[str, Any]:
    """Summarise the whole study (all materialisations), store it on the data plane, and return it."""
    study = context.study
    trials = study.get_trials(deepcopy=False)
    states = {state.name.lower(): sum(trial.state == state for trial in trials) for state in TrialState}
    complete = [trial for trial in trials if trial.state == TrialState.COMPLETE]
    best = study.best_trial if complete else None
    summary = {
        "study_name": context.name,
        "storage_url": context.storage_url,
        "metric": context.space.metric,
        "direction": context.space.direction,
        "task_type": context.task_type,
        "settings": context.settings.to_dict(),
        "states": {name: count for name, count in states.items() if count},
        "best": None
        if best is None
        else {**trial_record(best), "val_interval": best.user_attrs.get("val_interval")},
        "best_by_family": best_by_family(complete, context.space.metric),
        "this_run": {
            "slots": len(outcomes),
            "finished": sorted(n for outcome in outcomes for n in outcome.get("finished", [])),
            "failed": sorted(n for outcome in outcomes for n in outcome.get("failed", [])),
            "resumed": sorted(n for outcome in outcomes for n in outcome.get("resumed", [])),
        },
        "leaderboard": leaderboard(study),
    }
    summary["within_noise"] = trials_within_noise(summary)
    summary["family_blend"] = family_blend(context, data_plane, complete)
    data_plane.put_json(summary, context.spec.graph_name, "hpo", context.query.name, "summary.json")
    return summary


def read_study_summary(data_plane: DataPlane, graph: str, query: str) -> dict[str, Any]:
    try:
        return data_plane.get_json(graph, "hpo", query, "summary.json")
    except FileNotFoundError as missing:
        raise FileNotFoundError(f"no study summary for {graph}/{query}: materialise {graph}/hpo_study/{query} "
                                "first") from missing  # fmt: skip


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


def trials_within_noise(summary: dict[str, Any]) -> dict[str, Any] | None:
    """How many complete trials score inside the best trial's validation interval (entities resampled):
    those the validation set cannot tell from the winner. None when the best trial has no interval."""
    interval = (summary.get("best") or {}).get("val_interval")
    if not interval or interval.get("low") is None or math.isnan(interval["low"]):
        return None
    values = [row["value"] for row in summary["leaderboard"] if row["state"] == "complete"]
    inside = sum(interval["low"] <= value <= interval["high"] for value in values)
    return {"trials": inside, "complete": len(values), "low": interval["low"], "high": interval["high"],
            "entities": interval["groups"]}  # fmt: skip


def trial_record(trial) -> dict[str, Any]:
    """What a refit needs of a complete trial: its number, value, parameters, best epoch and run key."""
    return {"number": trial.number, "value": trial.value, "params": trial.user_attrs.get("params", {}),
            "best_epoch": trial.user_attrs.get("best_epoch"), "run_key": trial.user_attrs.get("run_key")}  # fmt: skip


def best_by_family(complete: list, metric: str) -> dict[str, dict[str, Any]]:
    """The best complete trial of each model family (the embeddings come from the best GNN's refit)."""
    return {family: trial_record(trial) for family, trial in sorted(_best_trials(complete, metric).items())}


def _best_trials(complete: list, metric: str) -> dict[str, Any]:
    best: dict[str, Any] = {}
    for trial in complete:
        family = trial.user_attrs.get("params", {}).get("family")
        if not family or "run_key" not in trial.user_attrs:
            continue
        if family not in best or is_better(metric, trial.value, best[family].value):
            best[family] = trial
    return best


def family_blend(context: StudyContext, data_plane: DataPlane, complete: list) -> dict[str, Any] | None:
    """The best complete trial of each family, blended on validation (models/blending.py): whether the blend
    beats the winner alone. None with fewer than two families or for ranked outputs."""
    if context.task_type not in BLENDABLE:
        return None
    best = _best_trials(complete, context.space.metric)
    if len(best) < 2:
        return None
    members = {}
    for family, trial in sorted(best.items()):
        parts = (
            context.spec.graph_name,
            "models",
            context.query.name,
            trial.user_attrs["run_key"],
            SCORED_ROWS,
        )
        try:
            members[f"{family} (trial {trial.number})"] = scored_rows_from_bytes(
                data_plane.get_bytes(*parts)
            )["val"]
        except FileNotFoundError:
            return None  # trained before runs kept their scored rows
    try:
        report = blend_report(context.task_type, members)
    except ValueError:  # the families scored different rows (say, one dropped entities): nothing to blend
        return None
    refits = {family: trial_record(trial) for family, trial in sorted(best.items())}
    return {
        **report,
        "refits": refits,
        "trials": {f: t.number for f, t in sorted(best.items())},
    }


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
