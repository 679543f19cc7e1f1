"""What a study shows in the UI: pictures first, then the leaderboard and the per-family best as tables.

The summary is also written to ``<graph>/hpo/<query>/summary.json`` on the data plane, which the
``best_model`` asset reads to find the study.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from kumo_assets.ui_pictures import picture_metadata
from kumo_assets.ui_tables import readable, ui_table
from stores.data_plane import DataPlane
from training.pictures import study_pictures
from training.studies import dashboard_hint
from training.study_setup import StudyContext

__all__ = ["leaderboard_table", "study_metadata"]

LEADERBOARD_ROWS = 20
# the parameters a person compares at a glance, per family (a GNN's row never lists GBDT settings)
SHOWN_PARAMS = {
    "gnn": (
        "conv",
        "channels",
        "layers",
        "aggr",
        "lr",
        "batch_size",
        "fanouts",
        "sampling_strategy",
        "epochs",
    ),
    "gbdt": ("gbdt_trees", "gbdt_leaves", "gbdt_learning_rate"),
}


def study_metadata(context: StudyContext, summary: dict[str, Any], data_plane: DataPlane, key: dg.AssetKey,
                   version: str) -> dict[str, dg.MetadataValue]:  # fmt: skip
    """Pictures (history, importances, learning curves), the leaderboard, the best per family, then facts."""
    metric = summary["metric"]
    metadata = picture_metadata(data_plane, key, study_pictures(context.study, metric), version)
    metadata["leaderboard"] = leaderboard_table(summary["leaderboard"], metric)
    best = summary["best"]
    if best is not None:
        metadata[f"best_val_{metric}"] = dg.MetadataValue.float(readable(float(best["value"])))
        family = (best.get("params") or {}).get("family")
        # text, not a number: a trial's number is a label, and the Plots tab charts every numeric entry
        metadata["best_trial"] = dg.MetadataValue.text(
            f"trial {best['number']}" + (f" ({family})" if family else "")
        )
    metadata["trials"] = ui_table([("state", "string"), ("trials", "int")], sorted(summary["states"].items()))
    by_family = summary.get("best_by_family") or {}
    if by_family:
        metadata["best_by_family"] = ui_table(
            [("family", "string"), ("trial", "int"), (f"val {metric}", "float")],
            [[family, row["number"], row["value"]] for family, row in sorted(by_family.items())],
        )
    noise = summary.get("within_noise")
    if noise:
        metadata["validation_noise"] = dg.MetadataValue.text(
            f"{noise['trials']} of {noise['complete']} complete trials score inside the best trial's 95% interval "
            f"({noise['low']:.4f} .. {noise['high']:.4f}, {noise['entities']} validation entities resampled): "
            "the validation rows cannot rank those"
        )
    blend = summary.get("family_blend")
    if blend:
        members = ", ".join(f"{name} {value:.4f}" for name, value in blend["members"].items())
        verdict = "beats" if blend["blend_is_better"] else "does not beat"
        metadata["family_blend"] = dg.MetadataValue.text(
            f"validation {blend['metric']}: {members}; their blend {blend['blend']:.4f} {verdict} the better one"
        )
    seeds = summary.get("study_seeds")
    if seeds:
        metadata["study_seeds"] = ui_table(
            [("seed", "int"), ("complete trials", "int"), ("best family", "string"), ("best trial", "string"),
             (f"best val {metric}", "float")],
            [[row["seed"], row["complete"], row["best_family"] or "-", str(row["best_trial"]),
              float("nan") if row["best_value"] is None else row["best_value"]]
             for row in seeds["seeds"]],
        )  # fmt: skip
        if seeds["std"] is not None:
            metadata["over_study_seeds"] = dg.MetadataValue.text(
                f"best val {metric} over {len(seeds['seeds'])} study seeds: {seeds['mean']:.4f} +- {seeds['std']:.4f} "
                f"(min {seeds['min']:.4f}, max {seeds['max']:.4f}); best_model refits seed {seeds['chosen_seed']}'s "
                "best trial, the one that validates best"
            )
    metadata["metric"] = dg.MetadataValue.text(f"{metric} ({summary['direction']}), validation rows only")
    metadata["study"] = dg.MetadataValue.text(context.name)
    metadata["storage"] = dg.MetadataValue.text(context.storage_url)
    metadata["dashboard"] = dg.MetadataValue.text(dashboard_hint(context.storage_url))
    return metadata


def leaderboard_table(rows: list[dict[str, Any]], metric: str) -> dg.MetadataValue:
    """The best trials first (at most 20): family, state, validation metric, time, its parameters, where it
    ran and what it cost when any trial ran off this machine, and why each failed trial failed."""
    shown = rows[:LEADERBOARD_ROWS]
    placed = any((row["instance_type"] or "local") != "local" or row["cost_usd"] for row in shown)
    failed = any(row.get("failure") for row in shown)
    columns = [("trial", "int"), ("family", "string"), ("state", "string"), (f"val {metric}", "float"),
               ("seconds", "float"), *([("instance", "string"), ("cost $", "float")] if placed else []),
               ("parameters", "string"), *([("why it failed", "string")] if failed else [])]  # fmt: skip
    return ui_table(columns, [[row["number"], row["family"] or "", row["state"], row["value"], row["seconds"],
                               *([row["instance_type"] or "", row["cost_usd"]] if placed else []),
                               _parameters(row["family"], row["params"]),
                               *([_shortened(row.get("failure") or "")] if failed else [])] for row in shown])  # fmt: skip


def _shortened(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


SHORT_NAMES = {"sampling_strategy": "sampling", "batch_size": "batch", "learning_rate": "lr"}


def _parameters(family: str | None, params: dict) -> str:
    names = SHOWN_PARAMS.get(family or "gnn", SHOWN_PARAMS["gnn"])
    shown = [(SHORT_NAMES.get(name.removeprefix("gbdt_"), name.removeprefix("gbdt_")), params[name])
             for name in names if name in params]  # fmt: skip
    return ", ".join(f"{name}={_compact(value)}" for name, value in shown)


def _compact(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value).replace(" ", "")
