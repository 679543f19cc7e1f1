"""Trivial baselines on the validation rows, computed in the same run as the model they put in context.

A score means little alone (is AUROC 0.83 good?); beside what a constant and the entity's own history score
on the same rows, with the same entity-resampled interval, it does. Each baseline sees only training-split
labels: the compiler cuts the training anchors so that their label windows close before the first validation
anchor, so an entity's training labels are history by the time of any validation row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from models.uncertainty import MetricInterval, ScoredRows, grouped_bootstrap, summary_resamples

__all__ = ["BASELINE_TASKS", "Baseline", "baseline_outputs", "trivial_baselines"]

BASELINE_TASKS = ("binary_classification", "regression")


@dataclass(frozen=True)
class Baseline:
    """One trivial predictor and its metric on the validation rows."""

    name: str
    description: str
    interval: MetricInterval


def trivial_baselines(table: pl.DataFrame, task_type: str, metric: str) -> list[Baseline]:
    """Constant and own-history baselines on ``table``'s validation rows (columns entity, anchor_time, label,
    split), each with its entity-resampled interval. Other task types get none (an empty list), and say so
    where they are shown."""
    outputs = baseline_outputs(table, task_type, "val")
    if not outputs:
        return []
    val = table.filter(pl.col("split") == "val")
    labels, entities = val["label"].cast(pl.Float64).to_numpy(), val["entity"].to_numpy()
    return [Baseline(name, description, _interval(task_type, metric, labels, scores, entities))
            for name, (description, scores) in outputs.items()]  # fmt: skip


def baseline_outputs(table: pl.DataFrame, task_type: str, split: str) -> dict[str, tuple[str, np.ndarray]]:
    """Each trivial baseline's output for every row of ``split`` (in table order), from the labels of the
    splits before it only: train for "val"; train + val for "test" (the refit's rows, whose label windows the
    compiler closes before the first test anchor).

    Binary: the history positive rate (a constant: AUROC 0.5 by construction), the entity's own positive
    rate and its own last label. Regression: the history mean and median, the entity's own mean and its own
    last value. Entities without history get the overall rate (binary) or median (regression)."""
    if task_type not in BASELINE_TASKS:
        return {}
    earlier = {"val": ("train",), "test": ("train", "val")}[split]
    labelled = pl.col("label").cast(pl.Float64)
    history = table.filter(pl.col("split").is_in(earlier)).select("entity", "anchor_time", labelled)
    rows = table.filter(pl.col("split") == split).select("entity")
    if history.is_empty() or rows.is_empty():
        return {}
    own = (
        history.sort("anchor_time")
        .group_by("entity")
        .agg(own=pl.col("label").mean(), last=pl.col("label").last())
    )
    rows = rows.join(own, on="entity", how="left", maintain_order="left")
    mean, median = float(history["label"].mean()), float(history["label"].median())
    binary = task_type == "binary_classification"
    fallback = mean if binary else median
    what = " and ".join(earlier)
    own_columns = {
        "own history": (f"the entity's {what} {'positive rate' if binary else 'mean'}", "own"),
        "own last value": (f"the entity's latest {what} label", "last"),
    }
    constants = (
        {"constant": (f"the {what} positive rate, every row", mean)}
        if binary
        else {"constant mean": (f"the {what} mean, every row", mean),
              "constant median": (f"the {what} median, every row", median)}
    )  # fmt: skip
    outputs = {
        name: (description, np.full(len(rows), value)) for name, (description, value) in constants.items()
    }
    for name, (description, column) in own_columns.items():
        outputs[name] = (description, rows[column].fill_null(fallback).to_numpy())
    return outputs


def _interval(task_type: str, metric: str, labels, outputs, entities) -> MetricInterval:
    rows = ScoredRows(
        labels.astype(int) if task_type == "binary_classification" else labels, outputs, entities
    )
    return grouped_bootstrap(task_type, metric, rows, resamples=summary_resamples(len(entities)))
