"""From query text to an audited training table with its metadata: the function the asset and CLI call."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import polars as pl

from relational.checks import CheckOutcome
from relational.errors import KumoError
from relational.pql.anchors import AnchorPlan, DataTimes, resolve_anchors
from relational.pql.audit import audit_training_table
from relational.pql.binder import bind_query
from relational.pql.bound import BoundQuery
from relational.pql.compiler import SPLITS, compile_training_table
from relational.pql.parser import parse_query
from relational.pql.split_checks import refuse_anchors_outside_data, refuse_empty_splits
from relational.schema import GraphSchema
from relational.table_build import EVENT_TIME

__all__ = [
    "MIN_LABELS_PER_SPLIT",
    "TrainingTable",
    "build_training_table",
    "label_distribution",
    "task_description",
    "training_table_checks",
]


@dataclass
class TrainingTable:
    """A training table (entity, anchor_time, label, split) and the metadata written beside it."""

    bound: BoundQuery
    table: pl.DataFrame
    meta: dict


def build_training_table(
    query: str,
    schema: GraphSchema,
    tables: Mapping[str, pl.DataFrame],
    plan: AnchorPlan | None = None,
    progress: Callable[[str], None] | None = None,
    *,
    refuse_degenerate: bool = True,
) -> TrainingTable:
    """Parse, bind, choose anchors, compile and audit one predictive query. ``refuse_degenerate`` refuses
    explicit anchors whose window outruns the data and splits that come out empty (off only for tests of
    the compiler's semantics on tiny random databases)."""
    bound = bind_query(parse_query(query), schema, tables)
    plan = plan or AnchorPlan()
    anchors: dict[str, list[int]] = {}
    times = _data_times(bound, tables) if bound.is_temporal else None
    if times is not None:
        anchors = resolve_anchors(plan, bound.target_window.length_seconds, times)
        if refuse_degenerate and plan.timestamps is not None:
            refuse_anchors_outside_data(anchors, bound.target_window, times.first, times.last)
    compiled = compile_training_table(bound, tables, anchors, progress)
    if refuse_degenerate:
        span = (times.first, times.last) if times else None
        refuse_empty_splits(bound, compiled.table, compiled.anchors, span, plan.timestamps is not None)
    audit = audit_training_table(bound, compiled.provenance, compiled.anchors, tables, compiled.table)
    meta = {
        "query": query,
        "task_type": bound.task_type,
        "parsed": bound.explain(),
        "anchor_plan": plan.to_dict(),
        "anchors": {
            split: {
                "count": len(values),
                "first": values[0] if values else None,
                "last": values[-1] if values else None,
            }
            for split, values in compiled.anchors.items()
        },
        "rows": {split: int((compiled.table["split"] == split).sum()) for split in SPLITS},
        "label_distribution": label_distribution(compiled.table, bound.task_type),
        "leakage_audit": audit,
        "masked_input_columns": bound.masked_input_columns,
        "positive_class": bound.positive_class,
    }
    return TrainingTable(bound, compiled.table, meta)


def _data_times(bound: BoundQuery, tables: Mapping[str, pl.DataFrame]) -> DataTimes:
    timed = [frame.get_column(EVENT_TIME) for frame in tables.values() if EVENT_TIME in frame.columns]
    timed = [series for series in timed if series.len() > 0]
    target_tables = {a.table for key, a in bound.aggregations.items() if key.startswith("target")}
    target_times = [tables[name].get_column(EVENT_TIME).max() for name in target_tables]
    target_times = [value for value in target_times if value is not None]
    if not timed or not target_times:
        raise KumoError(
            "the tables this query aggregates hold no rows with a time: there is nothing to label"
        )
    return DataTimes(
        first=min(int(series.min()) for series in timed),
        last=max(int(series.max()) for series in timed),
        last_target=max(int(value) for value in target_times),
    )


def task_description(meta: dict) -> str:
    """The task type as a reader needs it: a two-class target says which class is labelled 1."""
    positive = meta.get("positive_class")
    return meta["task_type"] if positive is None else f"{meta['task_type']} (label 1 = {positive!r})"


def _number(value) -> float | None:
    return None if value is None else float(value)


def label_distribution(table: pl.DataFrame, task_type: str) -> dict:
    """Per split: counts and positive rate (binary), moments (regression), top classes (others)."""
    result = {}
    for split in SPLITS:
        labels = table.filter(pl.col("split") == split).get_column("label")
        if labels.len() == 0:
            result[split] = {"rows": 0}
        elif task_type == "binary_classification":
            positives = int(labels.sum())
            result[split] = {
                "rows": labels.len(),
                "positives": positives,
                "positive_rate": positives / labels.len(),
            }
        elif task_type in {"regression", "forecasting"} and labels.dtype.is_numeric():
            result[split] = {
                "rows": labels.len(),
                **{
                    name: _number(getattr(labels, name)()) for name in ("mean", "std", "min", "median", "max")
                },
            }
        else:
            values = labels.explode(empty_as_null=True) if isinstance(labels.dtype, pl.List) else labels
            top = values.value_counts(sort=True).head(10).rows()
            result[split] = {"rows": labels.len(), "top": [[str(value), count] for value, count in top]}
    return result


# Fewer labels than this in a split (of each class, for a binary task) and its metric is mostly noise.
MIN_LABELS_PER_SPLIT = 20


def training_table_checks(meta: dict, minimum: int = MIN_LABELS_PER_SPLIT) -> list[CheckOutcome]:
    """The training table's checks from its metadata: the leakage audit (blocking: a failing audit raises
    before anything is written) and enough labels in every split (warns)."""
    audit = meta["leakage_audit"]
    leakage = CheckOutcome(
        "leakage_audit", bool(audit["passed"]), True,
        "Every label reads only its window after the anchor, every filter and entity is at or before it, and "
        "the splits are in time order (blocking: a failing audit writes nothing).",
        {name: value for name, value in audit.items() if name != "passed"},
    )  # fmt: skip
    counts, thin = {}, []
    for split, stats in meta["label_distribution"].items():
        if meta["task_type"] == "binary_classification" and stats["rows"]:
            counts[split] = {"positives": stats["positives"], "negatives": stats["rows"] - stats["positives"]}
        else:
            counts[split] = {"rows": stats["rows"]}
        thin += [f"{split}: {count} {kind}" for kind, count in counts[split].items() if count < minimum]
    verdict = "; ".join(thin) if thin else "every split has enough"
    labels = CheckOutcome(
        "labels_per_split", not thin, False,
        f"At least {minimum} labels per split (of each class for a binary task): {verdict}. Fewer make that "
        "split's metric mostly noise: widen the anchors (more timestamps) or the target window.",
        {split: ", ".join(f"{count} {kind}" for kind, count in values.items()) for split, values in counts.items()},
    )  # fmt: skip
    return [leakage, labels]
