"""The leakage audit, run on every training table before it is written: fail loudly on any violation.

Rules: (1) each label uses only rows inside its window (anchor+start, anchor+end]; (2) every row a filter
reads (WHERE, including a parent table's row) is at or before its anchor, and every entity exists at its
anchor; (3) splits are ordered in time: every train anchor < every val anchor < every test anchor, and no
label window of an earlier split reaches past the first anchor of a later one; (4) given the tables, a
sample of labels recomputed from them in plain Python (`relational.pql.recompute`) equals the labels.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import polars as pl

from relational.pql.bound import BoundQuery
from relational.pql.errors import LeakageError
from relational.pql.recompute import label_mismatches, sampled

__all__ = ["audit_entity_selection", "audit_training_table"]

_ORDER = ("train", "val", "test")


def audit_training_table(
    bound: BoundQuery,
    provenance: pl.DataFrame,
    anchors: dict[str, list[int]],
    tables: Mapping[str, pl.DataFrame] | None = None,
    table: pl.DataFrame | None = None,
) -> dict:
    """Check the rules above against the provenance of every row (and, given the ``tables`` and the training
    ``table``, rule 4); return counts, raise `LeakageError`."""
    problems: list[str] = []
    checked = {"rows": provenance.height}
    if bound.is_temporal:
        problems += _read_before_anchor(bound, bound.aggregations, provenance)
        problems += _split_order(bound, anchors)
        checked["anchors_with_rows"] = provenance.get_column("anchor_time").n_unique()
    if tables is not None and table is not None:
        problems += label_mismatches(bound, tables, table, _declared_bounds)
        checked["labels_recomputed"] = sampled(table).height
    _raise_if(bound, problems)
    return {"passed": True, **checked}


def audit_entity_selection(bound: BoundQuery, provenance: pl.DataFrame) -> dict:
    """Rule (2) for the rows a prediction scores (`select_entities`): every WHERE row and every entity is at or
    before its anchor, and each filter read only its window. Raises `LeakageError`; returns counts."""
    where = {key: value for key, value in bound.aggregations.items() if key.startswith("where")}
    _raise_if(bound, _read_before_anchor(bound, where, provenance))
    return {"passed": True, "rows": provenance.height,
            "anchors_with_rows": provenance.get_column("anchor_time").n_unique()}  # fmt: skip


def _read_before_anchor(bound: BoundQuery, aggregations: dict, provenance: pl.DataFrame) -> list[str]:
    """Rules (1) and (2): each aggregation inside its window, filters and entities at or before the anchor."""
    problems = []
    for key, parent in bound.parents.items():
        late = provenance.filter(pl.col(f"{key}__time") > pl.col("anchor_time"))
        if late.height:
            problems.append(f"{late.height} row(s): {parent} was read from a row created after the anchor")
    anchor_times = sorted(set(provenance.get_column("anchor_time").to_list()))
    bounds = {anchor: {} for anchor in anchor_times}
    for key, aggregation in aggregations.items():
        for anchor in anchor_times:
            bounds[anchor][key] = _declared_bounds(aggregation.window, anchor)
        problems += _window_violations(key, provenance, bounds)
        if key.startswith("where"):
            late = provenance.filter(pl.col(f"{key}__max_time") > pl.col("anchor_time"))
            if late.height:
                problems.append(f"{late.height} row(s): filter {key} read rows after the anchor")
    early = provenance.filter(pl.col("_entity_time") > pl.col("anchor_time"))
    if early.height:
        problems.append(f"{early.height} row(s): the entity did not exist yet at its anchor")
    return problems


def _raise_if(bound: BoundQuery, problems: list[str]) -> None:
    if problems:
        raise LeakageError(
            "leakage audit failed for query " + repr(bound.text) + ":\n  " + "\n  ".join(problems)
        )


_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}


def _declared_bounds(window, anchor: int) -> tuple[int | None, int]:
    """The window as written in the query, computed here on its own so a compiler bug cannot hide."""
    if window.unit == "months":
        return window.bounds(anchor)
    unit = _SECONDS[window.unit]
    low = None if math.isinf(window.start) else anchor + round(window.start * unit)
    return low, anchor + round(window.end * unit)


def _window_violations(key: str, provenance: pl.DataFrame, bounds: dict) -> list[str]:
    declared = pl.DataFrame(
        {
            "anchor_time": list(bounds),
            "low": [bounds[anchor][key][0] for anchor in bounds],
            "high": [bounds[anchor][key][1] for anchor in bounds],
        },
        schema={"anchor_time": pl.Int64, "low": pl.Int64, "high": pl.Int64},
    )
    frame = provenance.select(
        "anchor_time", pl.col(f"{key}__min_time").alias("first"), pl.col(f"{key}__max_time").alias("last")
    ).join(declared, on="anchor_time", how="left")
    outside = frame.filter(
        (pl.col("first").is_not_null() & pl.col("low").is_not_null() & (pl.col("first") <= pl.col("low")))
        | (pl.col("last").is_not_null() & (pl.col("last") > pl.col("high")))
    )
    if outside.height:
        return [f"{outside.height} row(s): {key} used rows outside its window (start excluded, end included)"]
    return []


def _split_order(bound: BoundQuery, anchors: dict[str, list[int]]) -> list[str]:
    problems = []
    present = [split for split in _ORDER if anchors.get(split)]
    for earlier, later in itertools.pairwise(present):
        if max(anchors[earlier]) >= min(anchors[later]):
            problems.append(f"{earlier} anchors must all come before {later} anchors")
        target_windows = [a.window for key, a in bound.aggregations.items() if key.startswith("target")]
        reach = (
            max(_declared_bounds(w, max(anchors[earlier]))[1] for w in target_windows)
            if target_windows
            else None
        )
        if reach is not None and reach > min(anchors[later]):
            problems.append(f"{earlier} labels reach past the first {later} anchor (their windows overlap)")
    return problems
