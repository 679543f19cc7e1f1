"""The audit's own recomputation of labels from the tables, in plain Python, sharing no code with the compiler.

For a sample of rows of a training table it follows the foreign keys by hand, keeps the rows inside the
window the audit computed from the query, applies each aggregation's WHERE, aggregates, evaluates the
target, and compares with the label the compiler wrote.
"""

from __future__ import annotations

import math
import operator
from collections import defaultdict
from collections.abc import Callable, Mapping

import polars as pl

from relational.keys import NODE_ID
from relational.pql.ast import BoolOp, Column, Comparison, Literal, Membership, Not, NullCheck
from relational.pql.bound import BoundAggregation, BoundQuery, ParentColumn, Window
from relational.spec import ForeignKey
from relational.table_build import EVENT_TIME

__all__ = ["SAMPLE", "label_mismatches", "sampled"]

SAMPLE = 64  # rows recomputed per training table, spread evenly over it
_OPERATORS = {"=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
              ">=": operator.ge}  # fmt: skip


def label_mismatches(
    bound: BoundQuery,
    tables: Mapping[str, pl.DataFrame],
    table: pl.DataFrame,
    declared: Callable[[Window, int], tuple[int | None, int]],
) -> list[str]:
    """Recompute up to `SAMPLE` labels; one problem line if any differs (``declared`` gives window bounds)."""
    if table.height == 0:
        return []
    sample = sampled(table)
    entity = tables[bound.entity_table]
    keys = sample.get_column("entity").unique().to_list()
    rows = entity.filter(pl.col(bound.entity_column).is_in(keys))
    by_key = {row[bound.entity_column]: row for row in rows.iter_rows(named=True)}
    parents = {key: _parent_rows(tables, list(by_key.values()), p.path) for key, p in bound.parents.items()}
    windows = {key: _rows_by_entity(a, tables, {r[NODE_ID] for r in by_key.values()})
               for key, a in bound.aggregations.items() if key.startswith("target")}  # fmt: skip
    wrong = []
    for key, anchor, label in sample.select("entity", "anchor_time", "label").iter_rows():
        row = by_key[key]
        try:
            expected = _recompute(bound, row, anchor, parents, windows, declared)
        except TypeError:
            continue  # values Python cannot compare with each other: nothing to check on this row
        if not _same(label, expected):
            wrong.append((key, anchor, label, expected))
    if not wrong:
        return []
    key, anchor, label, expected = wrong[0]
    return [f"{len(wrong)} of {sample.height} sampled label(s) differ from the audit's recomputation from the "
            f"tables (first: entity {key!r} at anchor {anchor}: label {label!r}, recomputed {expected!r})"]  # fmt: skip


def sampled(table: pl.DataFrame) -> pl.DataFrame:
    """The rows recomputed: up to `SAMPLE`, evenly spread over the table (deterministic)."""
    return table.gather_every(max(1, table.height // SAMPLE)).head(SAMPLE)


def _recompute(bound: BoundQuery, row: dict, anchor, parents: dict, windows: dict, declared: Callable):
    """The label of one (entity row, anchor) from the rows gathered for the sample."""
    environment = {"entity": row, "parents": {}, "aggregations": {}}
    for parent_key, parent in bound.parents.items():
        found, time = parents[parent_key].get(row[NODE_ID], (None, None))
        known = found is not None and (not bound.is_temporal or time is None or time <= anchor)
        environment["parents"][parent_key] = found[parent.column] if known else None
    for aggregation_key, rows_of in windows.items():
        aggregation = bound.aggregations[aggregation_key]
        low, high = declared(aggregation.window, anchor)
        chosen = [
            r for r in rows_of.get(row[NODE_ID], [])
            if r[EVENT_TIME] is not None and (low is None or r[EVENT_TIME] > low) and r[EVENT_TIME] <= high
        ]  # fmt: skip
        if aggregation.where is not None:
            chosen = [r for r in chosen if _truth(_evaluate(aggregation.where, {"entity": r}))]
        environment["aggregations"][aggregation_key] = _aggregate(aggregation, chosen)
    return _label(bound, environment)


def _parent_rows(tables, rows: list[dict], path: tuple[ForeignKey, ...]) -> dict[int, tuple]:
    """Entity node id -> (the parent row its keys reach, the latest time of a row on the way); absent when a
    key on the way is null or dangles."""
    reached = {row[NODE_ID]: (row.get(path[0].id_column), None) for row in rows}
    for index, fk in enumerate(path):
        ids = [node for node, _ in reached.values() if node is not None]
        found = {
            row[NODE_ID]: row
            for row in tables[fk.table].filter(pl.col(NODE_ID).is_in(ids)).iter_rows(named=True)
        }
        stepped = {}
        for entity, (node, latest) in reached.items():
            if node not in found:
                continue
            time = found[node].get(EVENT_TIME)
            latest = time if latest is None else latest if time is None else max(latest, time)
            stepped[entity] = (
                (found[node], latest)
                if index == len(path) - 1
                else (found[node].get(path[index + 1].id_column), latest)
            )
        reached = stepped
    return reached


def _rows_by_entity(aggregation: BoundAggregation, tables, entities: set[int]) -> dict[int, list[dict]]:
    """Entity node id -> rows of the aggregated table that belong to it, in table order."""
    sources = [aggregation.table, *(fk.table for fk in aggregation.path[:-1])]
    owner = {entity: entity for entity in entities}
    for source, fk in reversed(list(zip(sources, aggregation.path, strict=True))[1:]):
        frame = tables[source].filter(pl.col(fk.id_column).is_in(list(owner)))
        owner = {node: owner[parent] for node, parent in frame.select(NODE_ID, fk.id_column).iter_rows()}
    first = aggregation.path[0].id_column
    frame = tables[aggregation.table].filter(pl.col(first).is_in(list(owner)))
    result: dict[int, list[dict]] = defaultdict(list)
    for row in frame.iter_rows(named=True):
        result[owner[row[first]]].append(row)
    return result


def _aggregate(aggregation: BoundAggregation, rows: list[dict]):
    function, column = aggregation.function, aggregation.column
    if column is None:
        return len(rows)
    present = [row[column] for row in sorted(rows, key=lambda r: r[EVENT_TIME]) if row[column] is not None]
    if function == "COUNT":
        return len(present)
    if function == "SUM":
        return sum(present)
    if function == "COUNT_DISTINCT":
        return len(set(present))
    if function == "LIST_DISTINCT":
        return list(dict.fromkeys(present)) or None
    if not present:
        return None
    return {"AVG": lambda: sum(present) / len(present), "MIN": lambda: min(present), "MAX": lambda: max(present),
            "FIRST": lambda: present[0], "LAST": lambda: present[-1]}[function]()  # fmt: skip


def _label(bound: BoundQuery, environment: dict):
    if bound.task_type == "forecasting":
        values = [environment["aggregations"][key] for key in bound.aggregations if key.startswith("target")]
        return [None if value is None else float(value) for value in values]
    value = _evaluate(bound.target, environment)
    if bound.positive_class is not None:
        return None if value is None else int(value == bound.positive_class)
    if bound.task_type == "binary_classification":
        return int(_truth(value))
    if bound.label_separator is not None and isinstance(value, str):
        return [token.strip() for token in value.split(bound.label_separator) if token.strip()]
    return value


def _evaluate(node, environment: dict):
    """Two-valued: a comparison with a missing value is false; NOT of false is true."""
    if isinstance(node, BoundAggregation):
        return environment["aggregations"][node.key]
    if isinstance(node, ParentColumn):
        return environment["parents"][node.key]
    if isinstance(node, Column):
        return environment["entity"][node.column]
    if isinstance(node, Literal):
        return node.value
    if isinstance(node, Comparison):
        left = _evaluate(node.left, environment)
        if node.right.kind == "null" and node.operator in {"=", "!="}:
            return (left is None) == (node.operator == "=")
        return left is not None and bool(_OPERATORS[node.operator](left, node.right.value))
    if isinstance(node, Membership):
        value = _evaluate(node.value, environment)
        inside = value is not None and value in [option.value for option in node.options]
        return not inside if node.negated else inside
    if isinstance(node, NullCheck):
        return (_evaluate(node.value, environment) is None) != node.negated
    if isinstance(node, BoolOp):
        truths = [_truth(_evaluate(item, environment)) for item in node.items]
        return all(truths) if node.operator == "AND" else any(truths)
    if isinstance(node, Not):
        return not _truth(_evaluate(node.item, environment))
    raise TypeError(f"cannot evaluate {node!r}")


def _truth(value) -> bool:
    return bool(value) if value is not None else False


def _same(label, expected) -> bool:
    if isinstance(label, list) or isinstance(expected, list):
        if label is None or expected is None:
            return label is expected
        if all(isinstance(v, float | int) for v in [*label, *expected]):
            return len(label) == len(expected) and all(
                _same(a, b) for a, b in zip(label, expected, strict=True)
            )
        return sorted(map(str, label)) == sorted(map(str, expected))
    if isinstance(label, float) or isinstance(expected, float):
        return (
            expected is not None
            and label is not None
            and math.isclose(label, expected, rel_tol=1e-9, abs_tol=1e-9)
        )
    return label == expected
