"""A query's leaderboard: the study's choice beside trivial baselines on validation, the one holdout number
of the served model with its protocol, and published results where the query reproduces a published task.

Built once by ``best_model`` and stored beside its pointer (``<graph>/best_model/<query>/leaderboard.json``),
so the UI table and ``kumo leaderboard`` (what ``make demo`` prints at its end) show the same rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stores.data_plane import DataPlane
from training.baselines import Baseline

__all__ = ["REFIT_PROTOCOL", "format_leaderboard", "holdout_protocol", "leaderboard_rows", "published_numbers", "read_leaderboard",
           "write_leaderboard"]  # fmt: skip

REFIT_PROTOCOL = "refit on train + val, scored once"
FIELDS = ("model", "rows", "metric", "value", "low", "high", "note")


def _row(
    model: str, rows: str, metric: str, value: float | None, interval: dict[str, Any] | None, note: str
) -> dict:
    interval = interval or {}
    return {"model": model, "rows": rows, "metric": metric, "value": value, "low": interval.get("low"),
            "high": interval.get("high"), "note": note}  # fmt: skip


def leaderboard_rows(summary: dict[str, Any], baselines: list[Baseline], holdout: dict[str, Any],
                     published: list[dict[str, Any]]) -> list[dict[str, Any]]:  # fmt: skip
    """Validation rows first (the choice, the blend when served, the baselines), then holdout rows."""
    best, metric = summary["best"], summary["metric"]
    family = (best["params"].get("family") or "").upper()
    rows = [_row(f"chosen: {family} trial {best['number']}", "validation", metric, best["value"],
                 best.get("val_interval"), "picked on these rows")]  # fmt: skip
    blend = summary.get("family_blend") or {}
    if blend.get("blend_is_better") and holdout["model"].startswith("blend"):
        rows.append(_row("blend of the best of each family", "validation", metric, blend["blend"], None,
                         "preferred on validation: served"))  # fmt: skip
    rows += [_row(f"baseline: {b.name}", "validation", metric, b.interval.estimate, b.interval.to_dict(),
                  b.description) for b in baselines]  # fmt: skip
    if not baselines:
        rows.append(_row("baselines", "validation", metric, None, None,
                         f"none for {summary.get('task_type', 'this task type')}"))  # fmt: skip
    rows.append(_row(f"served: {holdout['model']}", "holdout (test)", metric, holdout["value"], holdout["interval"],
                     holdout_protocol(holdout.get("observe_until"), holdout.get("protocol", "refit"))))  # fmt: skip
    rows += [_row(f"published: {item['model']}", "holdout (test)", item["metric"], item["value"], None,
                  item["protocol"]) for item in published]  # fmt: skip
    return rows


TRAIN_ROWS_PROTOCOL = "trained on the training rows only (RelBench's protocol), scored once"


def holdout_protocol(observe_until: str | None, protocol: str = "refit") -> str:
    """How the holdout number was made: the final fit, and what each test row could see of the database."""
    view = f"database frozen at {observe_until}" if observe_until else "each row sees data up to its anchor"
    return f"{REFIT_PROTOCOL if protocol == 'refit' else TRAIN_ROWS_PROTOCOL}; {view}"


def published_numbers(spec_path: str | Path, query: str) -> list[dict[str, Any]]:
    """Published results for ``query`` from ``published.yaml`` beside the spec (empty when there is none)."""
    path = Path(spec_path).parent / "published.yaml"
    if not path.exists():
        return []
    entries = (yaml.safe_load(path.read_text()) or {}).get(query) or []
    required = {"model", "metric", "value", "protocol", "source"}
    for entry in entries:
        missing = required - set(entry)
        if missing:
            raise ValueError(
                f"{path}: an entry of {query} lacks {sorted(missing)} (needs {sorted(required)})"
            )
    return entries


def write_leaderboard(data_plane: DataPlane, graph: str, query: str, rows: list[dict[str, Any]]) -> None:
    data_plane.put_json({"query": query, "rows": rows}, graph, "best_model", query, "leaderboard.json")


def read_leaderboard(data_plane: DataPlane, graph: str, query: str) -> list[dict[str, Any]]:
    return data_plane.get_json(graph, "best_model", query, "leaderboard.json")["rows"]


def format_leaderboard(query: str, rows: list[dict[str, Any]]) -> str:
    """Plain text for a terminal: one line per row, value and interval to 4 significant digits."""

    def number(value) -> str:
        return "" if value is None else f"{value:.4g}"

    lines = [
        f"{query}:",
        f"  {'model':<44} {'rows':<15} {'metric':<7} {'value':>7}  {'95% interval':<17} note",
    ]
    for row in rows:
        interval = f"{number(row['low'])} .. {number(row['high'])}" if row["low"] is not None else ""
        lines.append(f"  {row['model']:<44} {row['rows']:<15} {row['metric']:<7} {number(row['value']):>7}  "
                     f"{interval:<17} {row['note']}")  # fmt: skip
    return "\n".join(lines)
