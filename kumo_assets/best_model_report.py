"""What `best_model` shows: every score in context, validation first, one holdout number, pictures.

The leaderboard (`training.leaderboard`) puts the study's choice beside trivial baselines computed in the
same run on the same validation rows, each with its 95% interval over resampled entities; then the one
holdout (test) number of the model that is served, labelled with its protocol; then published numbers where
the query reproduces a published task (``published.yaml`` beside ``queries.yaml``).
"""

from __future__ import annotations

from typing import Any

import dagster as dg
import numpy as np

from kumo_assets.ui_pictures import picture_metadata
from kumo_assets.ui_tables import ui_table
from models.blending import scored_rows_from_bytes
from models.metrics import is_better
from relational.pql.queries import NamedQuery
from relational.spec import GraphSpec
from stores.data_plane import DataPlane
from training.baselines import Baseline
from training.leaderboard import FIELDS
from training.pictures import model_pictures
from training.run import SCORED_ROWS

__all__ = ["BEATS_BASELINE", "baseline_check", "leaderboard_table", "validation_pictures"]

BEATS_BASELINE = "beats_trivial_baselines"
COLUMNS = [("model", "string"), ("rows", "string"), ("metric", "string"), ("value", "float"),
           ("95% low", "float"), ("95% high", "float"), ("note", "string")]  # fmt: skip


def leaderboard_table(rows: list[dict[str, Any]]) -> dg.MetadataValue:
    """`training.leaderboard` rows as a native table."""
    return ui_table(COLUMNS, [[row[name] for name in FIELDS] for row in rows])


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
