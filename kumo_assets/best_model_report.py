"""What `best_model` shows: every score in context, validation first, one holdout number, pictures.

The leaderboard (`training.leaderboard`) puts the study's choice beside trivial baselines computed in the
same run on the same validation rows, each with its 95% interval over resampled entities; then the one
holdout (test) number of the model that is served, labelled with its protocol; then published numbers where
the query reproduces a published task (``published.yaml`` beside ``queries.yaml``), each marked comparable or
not. The table is narrow enough to wrap inside the page at 1,600 pixels: short headers, one interval column,
and the metric named once rather than in a column of its own.
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import numpy as np

from kumo_assets.ui_pictures import picture_metadata
from kumo_assets.ui_tables import readable, ui_table
from models.blending import scored_rows_from_bytes
from models.metrics import is_better
from relational.pql.queries import NamedQuery
from relational.spec import GraphSpec
from stores.data_plane import DataPlane
from training.baselines import Baseline
from training.pictures import model_pictures
from training.run import SCORED_ROWS

__all__ = ["BEATS_BASELINE", "baseline_check", "leaderboard_table", "published_verdict", "served_text",
           "validation_pictures"]  # fmt: skip

BEATS_BASELINE = "beats_trivial_baselines"


def leaderboard_table(rows: list[dict[str, Any]], holdout: dict[str, Any]) -> dg.MetadataValue:
    """`training.leaderboard` rows as a native table narrow enough for the page: short headers (Dagster does not
    wrap them), the metric named in the value column's description (a row in another metric says so in its
    note), and a published row's note saying whether it is comparable with the served number."""
    metric = rows[0]["metric"] if rows else ""
    short = "not comparable" if not holdout.get("observe_until") else "comparable only at the same cut"

    def note(row: dict[str, Any]) -> str:
        text = row["note"] if row["metric"] == metric else f"{row['metric']}; {row['note']}"
        return f"{text}; {short}" if row["model"].startswith("published: ") else text

    columns = [
        ("model", "string"),
        ("rows", "string", "the split the value is computed on"),
        ("value", "float", f"{metric}, unless the note names another metric"),
        ("95% CI", "string", "over entities resampled with replacement"),
        ("note", "string"),
    ]
    return ui_table(
        columns, [[row["model"], row["rows"], row["value"], _interval(row), note(row)] for row in rows]
    )


def _interval(row: dict[str, Any]) -> str:
    if row["low"] is None or row["high"] is None:
        return ""
    return f"{readable(float(row['low']))}\u2013{readable(float(row['high']))}"  # an en dash: wraps after it if need be


def published_verdict(holdout: dict[str, Any]) -> str:
    """Whether the published numbers can sit beside the served one: only when both froze the database at the
    same cut and trained the same way; the product's default view (each row up to its anchor) is easier."""
    cut = holdout.get("observe_until")
    if not cut:
        return ("not comparable: published numbers follow their paper's protocol (each row's note says which), "
                "while each of our test rows sees the database up to its own anchor, an easier view")  # fmt: skip
    how = (
        "trained on the training rows only"
        if holdout.get("protocol") == "train_rows"
        else "refit on train + val"
    )
    return (f"comparable only where the paper froze the database at the same cut: ours froze it at {cut} and was "
            f"{how}")  # fmt: skip


def served_text(served: dict[str, Any], holdout: dict[str, Any]) -> str:
    """Which model is served and why: the study's choice, or the blend validation preferred; its runs and the
    decision threshold (binary tasks)."""
    why = ("the blend of each family's best trial beat the best trial alone on validation" if served.get("blend")
           else "the study's best trial on validation")  # fmt: skip
    members = " + ".join(f"{member['family']} {member['run_key']}" for member in served["members"])
    threshold = served.get("threshold")
    rule = f"; threshold {threshold['value']:.4f} ({threshold['rule']})" if threshold else ""
    return f"{holdout['model']}: {why}. Runs {members}{rule}"


def baseline_check(summary: dict[str, Any], baselines: list[Baseline]) -> dg.AssetCheckResult:
    """Passes when the chosen model's validation value is better than every trivial baseline's (warns)."""
    metric, value = summary["metric"], float(summary["best"]["value"])
    beaten = {b.name: is_better(metric, value, b.interval.estimate) for b in baselines}
    return dg.AssetCheckResult(
        check_name=BEATS_BASELINE,
        passed=all(beaten.values()),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            f"val {metric}": dg.MetadataValue.float(round(value, 4)),
            "baselines": ui_table([("baseline", "string"), (f"val {metric}", "float"), ("beaten", "bool")],
                                  [[b.name, b.interval.estimate, beaten[b.name]] for b in baselines]),
            "note": dg.MetadataValue.text("validation rows only" if baselines else "no trivial baseline for this task"),
        },
    )  # fmt: skip


def validation_pictures(data_plane: DataPlane, spec: GraphSpec, query: NamedQuery, summary: dict[str, Any],
                        key: dg.AssetKey, version: str) -> dict[str, dg.MetadataValue]:  # fmt: skip
    """ROC / precision-recall / calibration (binary) or residuals (regression) of the chosen trial on its
    validation rows: how the model the study picked behaves, drawn before the refit saw those rows."""
    run_key = summary["best"].get("run_key")
    parts = (spec.graph_name, "models", query.name, run_key, SCORED_ROWS)
    if not run_key or not data_plane.exists(*parts):
        return {}
    scored = scored_rows_from_bytes(data_plane.get_bytes(*parts)).get("val")
    if scored is None or not isinstance(scored.labels, np.ndarray):
        return {}
    pictures = model_pictures(summary.get("task_type", ""), scored.labels, scored.outputs, "validation")
    return picture_metadata(data_plane, key, pictures, version)
