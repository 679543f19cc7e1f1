"""A study's summary: the best trial, the best of each family, trials within noise and the family blend.

Written to ``<graph>/hpo/<query>/summary.json`` on the data plane when a study's run ends; `best_model`
reads it to find what to refit."""

from __future__ import annotations

import math
from typing import Any

from optuna.trial import TrialState

from models.blending import BLENDABLE, blend_report, scored_rows_from_bytes
from models.metrics import is_better
from stores.data_plane import DataPlane
from training.hpo import leaderboard
from training.run import SCORED_ROWS
from training.study_setup import StudyContext

__all__ = [
    "best_by_family",
    "family_blend",
    "over_study_seeds",
    "read_study_summary",
    "summarise_study",
    "trial_record",
    "trials_within_noise",
    "write_study_summaries",
]


def write_study_summaries(
    contexts: dict[int, StudyContext], data_plane: DataPlane, outcomes: dict[int, list[dict]]
) -> tuple[dict[str, Any], StudyContext]:
    """Summarise the study of each study seed and store what ``best_model`` refits as ``summary.json``.

    One seed: its summary. Several (``n_study_seeds``): each seed's summary is kept under ``seeds/<seed>.json``
    and ``summary.json`` is the seed whose best trial validates best (a choice on validation only), with
    ``study_seeds``: every seed's best and their spread. Returns that summary and its study."""
    summaries = {seed: summarise_study(context, data_plane, outcomes.get(seed, []))
                 for seed, context in contexts.items()}  # fmt: skip
    chosen = next(iter(contexts))
    if len(contexts) > 1:
        report = over_study_seeds(summaries)
        chosen = report["chosen_seed"]
        for seed, summary in summaries.items():
            data_plane.put_json(summary, *_summary_parts(contexts[seed]), "seeds", f"{seed}.json")
        summaries[chosen] = {**summaries[chosen], "study_seeds": report}
    data_plane.put_json(summaries[chosen], *_summary_parts(contexts[chosen]), "summary.json")
    return summaries[chosen], contexts[chosen]


def _summary_parts(context: StudyContext) -> tuple[str, ...]:
    return (context.spec.graph_name, "hpo", context.query.name)


def over_study_seeds(summaries: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """The same search run with different study seeds: each seed's best trial, the spread of their validation
    values (how much the search's own randomness moves the result) and the seed whose best validates best."""
    rows = []
    for seed, summary in sorted(summaries.items()):
        best = summary.get("best") or {}
        family = (best.get("params") or {}).get("family")
        complete = sum(row["state"] == "complete" for row in summary["leaderboard"])
        rows.append({"seed": seed, "study_name": summary["study_name"], "complete": complete,
                     "best_family": family, "best_trial": best.get("number"), "best_value": best.get("value")})  # fmt: skip
    metric = next(iter(summaries.values()))["metric"]
    values = [row["best_value"] for row in rows if row["best_value"] is not None]
    chosen = None
    for row in rows:
        if row["best_value"] is not None and (
            chosen is None or is_better(metric, row["best_value"], chosen["best_value"])
        ):
            chosen = row
    if chosen is None:
        chosen = rows[0]
    mean = sum(values) / len(values) if values else None
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    return {"metric": metric, "seeds": rows, "chosen_seed": chosen["seed"], "mean": mean, "std": std,
            "min": min(values) if values else None, "max": max(values) if values else None}  # fmt: skip


def summarise_study(context: StudyContext, data_plane: DataPlane, outcomes: list[dict]) -> dict[str, Any]:
    """Summarise the whole study (all materialisations): best trial, best per family, noise, family blend."""
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
        "families": list(context.space.families),
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
    return summary


def complete_trials_by_family(summary: dict[str, Any]) -> dict[str, int]:
    """How many complete trials each family the study searched has (0 for a family TPE never finished)."""
    counts = dict.fromkeys(summary.get("families") or [], 0)
    for row in summary["leaderboard"]:
        if row["state"] == "complete" and row["family"] in counts:
            counts[row["family"]] += 1
    return counts


def read_study_summary(
    data_plane: DataPlane, graph: str, query: str, seed: int | None = None
) -> dict[str, Any]:
    """The summary ``best_model`` refits (``seed`` None), or one study seed's when the study ran several."""
    name = ("summary.json",) if seed is None else ("seeds", f"{seed}.json")
    try:
        return data_plane.get_json(graph, "hpo", query, *name)
    except FileNotFoundError as missing:
        what = "study summary" if seed is None else f"summary of study seed {seed}"
        raise FileNotFoundError(f"no {what} for {graph}/{query}: materialise {graph}/{query}/study "
                                "first" + ("" if seed is None else " with n_study_seeds covering it")) from missing  # fmt: skip


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
