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

__all__ = ["BASELINE_TASKS", "Baseline", "trivial_baselines"]

BASELINE_TASKS = ("binary_classification", "regression")


@dataclass(frozen=True)
class Baseline:
    """One trivial predictor and its metric on the validation rows."""

    name: str
    description: str
    interval: MetricInterval


def trivial_baselines(table: pl.DataFrame, task_type: str, metric: str) -> list[Baseline]:
    """Constant and own-history baselines on ``table``'s validation rows (columns entity, label, split).

    Binary: the training positive rate (AUROC 0.5 by construction) and each entity's own training positive
    rate. Regression: the training mean and median, and each entity's own training mean. Other task types get
    none (an empty list), and say so where they are shown.
    """
    if task_type not in BASELINE_TASKS:
        return []
    train = table.filter(pl.col("split") == "train").select("entity", pl.col("label").cast(pl.Float64))
    val = table.filter(pl.col("split") == "val").select("entity", pl.col("label").cast(pl.Float64))
    if train.is_empty() or val.is_empty():
        return []
    labels, entities = val["label"].to_numpy(), val["entity"].to_numpy()
    history = val.join(train.group_by("entity").agg(own=pl.col("label").mean()), on="entity", how="left")
    mean, median = float(train["label"].mean()), float(train["label"].median())
    if task_type == "binary_classification":
        candidates = {
            "constant": ("the training positive rate, every row", np.full(len(labels), mean)),
            "own history": ("the entity's training positive rate",
                            history["own"].fill_null(mean).to_numpy()),
        }  # fmt: skip
    else:
        candidates = {
            "constant mean": ("the training mean, every row", np.full(len(labels), mean)),
            "constant median": ("the training median, every row", np.full(len(labels), median)),
            "own history": ("the entity's training mean",
                            history["own"].fill_null(median).to_numpy()),
        }  # fmt: skip
    return [Baseline(name, description, _interval(task_type, metric, labels, outputs, entities))
            for name, (description, outputs) in candidates.items()]  # fmt: skip


def _interval(task_type: str, metric: str, labels, outputs, entities) -> MetricInterval:
    rows = ScoredRows(
        labels.astype(int) if task_type == "binary_classification" else labels, outputs, entities
    )
    return grouped_bootstrap(task_type, metric, rows, resamples=summary_resamples(len(entities)))
