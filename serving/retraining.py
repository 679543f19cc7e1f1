"""Retraining rules of the new-data sensor: when new data arrives, should a query's best model be refit too?

Two rules, each with a threshold from the environment (``inf`` turns a rule off):

- ``KUMO_RETRAIN_MAX_MODEL_AGE_DAYS`` (default 30): the model was refit longer ago than this; its age
  comes from ``refit_at`` (epoch seconds) in ``<graph>/best_model/<query>/pointer.json``;
- ``KUMO_RETRAIN_MAX_SCORE_PSI`` (default 0.25): the score distribution drifted; the population stability
  index is ``score_psi`` of the newest ``<graph>/predictions/<query>/health/<YYYY-MM-DD>.json``.

A firing rule refits ``best_model`` (the study's winner on the new data), never the study itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stores.data_plane import DataPlane

__all__ = ["RetrainRules", "RetrainVerdict", "evaluate_retraining", "newest_health", "read_pointer"]

_HEALTH_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}\.json$")


@dataclass(frozen=True)
class RetrainRules:
    """Thresholds beyond which a query's best model is refit with the new data."""

    max_model_age_days: float = 30.0
    max_score_psi: float = 0.25

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> RetrainRules:
        """Thresholds from ``KUMO_RETRAIN_MAX_MODEL_AGE_DAYS`` and ``KUMO_RETRAIN_MAX_SCORE_PSI``."""
        environ = os.environ if environ is None else environ

        def number(name: str, default: float) -> float:
            text = environ.get(name, "").strip()
            if not text:
                return default
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"{name}={text!r}: give a number (or inf to turn the rule off)") from None

        return cls(
            max_model_age_days=number("KUMO_RETRAIN_MAX_MODEL_AGE_DAYS", cls.max_model_age_days),
            max_score_psi=number("KUMO_RETRAIN_MAX_SCORE_PSI", cls.max_score_psi),
        )


@dataclass(frozen=True)
class RetrainVerdict:
    """What the rules found for one query: rules that fired (with numbers), facts that did not fire."""

    graph: str
    query: str
    has_model: bool
    fired: tuple[str, ...] = ()
    held: tuple[str, ...] = ()

    @property
    def retrain(self) -> bool:
        return bool(self.fired)

    def describe(self) -> str:
        """E.g. ``best_model f1/driver_dnf: model age 41.2 days > 30``."""
        name = f"best_model {self.graph}/{self.query}"
        if not self.has_model:
            return f"{name}: no best model yet (nothing to refit or score)"
        if self.fired:
            return f"{name}: " + "; ".join(self.fired)
        return f"{name} kept: " + "; ".join(self.held)


def read_pointer(data_plane: DataPlane, graph: str, query: str) -> dict[str, Any] | None:
    """The best model's pointer.json, or None before the first best_model materialisation."""
    try:
        return data_plane.get_json(graph, "best_model", query, "pointer.json")
    except FileNotFoundError:
        return None


def newest_health(data_plane: DataPlane, graph: str, query: str) -> tuple[str, dict[str, Any]] | None:
    """(date, payload) of the latest-dated predictions health file of a query that has a score PSI (else the
    latest one: a day that selected nobody has none), or None if there is none."""
    parts = (graph, "predictions", query, "health")
    if data_plane.is_remote:
        bucket, _, prefix = data_plane.uri(*parts).removeprefix("s3://").partition("/")
        pages = data_plane.object_store.client().get_paginator("list_objects_v2")
        names = [
            item["Key"].rsplit("/", 1)[-1]
            for page in pages.paginate(Bucket=bucket, Prefix=prefix + "/")
            for item in page.get("Contents", [])
        ]
    else:
        folder = Path(data_plane.uri(*parts))
        names = [path.name for path in folder.iterdir()] if folder.is_dir() else []
    dated = sorted((name for name in names if _HEALTH_NAME.match(name)), reverse=True)
    newest = None
    for name in dated:  # an empty day (nothing selected) has no PSI: the newest day that has one decides
        health = data_plane.get_json(*parts, name)
        newest = newest or (name.removesuffix(".json"), health)
        if health.get("score_psi") is not None:
            return name.removesuffix(".json"), health
    return newest


def evaluate_retraining(
    data_plane: DataPlane, graph: str, query: str, rules: RetrainRules, now: float
) -> RetrainVerdict:
    """Apply the rules to one query's pointer.json and newest health file (``now``: epoch seconds)."""
    pointer = read_pointer(data_plane, graph, query)
    if pointer is None:
        return RetrainVerdict(graph, query, has_model=False)
    fired, held = [], []
    refit_at = pointer.get("refit_at")
    if refit_at is None:
        held.append("model age unknown (pointer.json has no refit_at)")
    else:
        age = (now - float(refit_at)) / 86400.0
        fact = f"model age {age:.1f} days"
        if age > rules.max_model_age_days:
            fired.append(f"{fact} > {rules.max_model_age_days:g}")
        else:
            held.append(f"{fact} <= {rules.max_model_age_days:g}")
    health = newest_health(data_plane, graph, query)
    psi = None if health is None else health[1].get("score_psi")
    if health is None:
        held.append("score PSI unknown (no predictions health yet)")
    elif psi is None:
        held.append(f"score PSI unknown on {health[0]}")
    elif float(psi) > rules.max_score_psi:
        fired.append(f"score PSI {float(psi):.3f} > {rules.max_score_psi:g} on {health[0]}")
    else:
        held.append(f"score PSI {float(psi):.3f} <= {rules.max_score_psi:g} on {health[0]}")
    return RetrainVerdict(graph, query, has_model=True, fired=tuple(fired), held=tuple(held))
