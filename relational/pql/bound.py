"""Bound query objects: a query matched to a graph, with windows in seconds and foreign-key paths."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from relational.pql.ast import BoolOp, Column, Comparison, Condition, Literal, Membership, Not, NullCheck
from relational.pql.render import render_condition, render_value
from relational.spec import ForeignKey

__all__ = ["BoundAggregation", "BoundQuery", "ParentColumn", "Window", "describe_condition"]

_UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800}
_NUMERIC_FUNCTIONS = {"SUM", "AVG", "MIN", "MAX"}
_DROPPING = {"AVG", "MIN", "MAX", "FIRST", "LAST", "LIST_DISTINCT", "COUNT_DISTINCT"}


@dataclass(frozen=True)
class Window:
    """(anchor + start, anchor + end] in ``unit``; months are calendar months."""

    start: float
    end: float
    unit: str

    def bounds(self, anchor: int) -> tuple[int | None, int]:
        """The window as (exclusive low, inclusive high) seconds; low is None for -INF."""
        return (None if math.isinf(self.start) else _shift(anchor, self.start, self.unit)), _shift(
            anchor, self.end, self.unit
        )

    @property
    def length_seconds(self) -> int:
        """Anchor spacing for this window (months count as 30 days for spacing only)."""
        start = 0.0 if math.isinf(self.start) else self.start
        per_unit = 30 * 86400 if self.unit == "months" else _UNIT_SECONDS[self.unit]
        return round((self.end - start) * per_unit)

    def describe(self) -> str:
        start = "-INF" if math.isinf(self.start) else f"{self.start:g}"
        return f"({start}, {self.end:g}] {self.unit}"


def _shift(anchor: int, amount: float, unit: str) -> int:
    if unit != "months":
        return anchor + round(amount * _UNIT_SECONDS[unit])
    if amount != int(amount):
        raise ValueError("month windows need whole numbers of months")
    moment = dt.datetime.fromtimestamp(anchor, dt.UTC)
    month_index = moment.year * 12 + moment.month - 1 + int(amount)
    year, month = divmod(month_index, 12)
    month += 1
    next_month = dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=dt.UTC)
    last_day = (next_month - dt.timedelta(days=1)).day
    return int(moment.replace(year=year, month=month, day=min(moment.day, last_day)).timestamp())


@dataclass(frozen=True)
class BoundAggregation:
    """An aggregation matched to the graph: which rows, which column, which window, how they reach the entity."""

    key: str  # column name of its values in the compiled frames
    function: str
    table: str
    column: str | None  # None for table.*
    column_stype: str | None
    window: Window
    path: tuple[ForeignKey, ...]  # foreign keys from the aggregated table up to the entity table
    where: Condition | None = None
    position: int = 0

    @property
    def drops_empty(self) -> bool:
        """Empty windows drop the example (COUNT and SUM give 0 instead)."""
        return self.function in _DROPPING


@dataclass(frozen=True)
class ParentColumn:
    """A column of a table the entity links to many-to-one, reached through ``path`` (the entity's key first).

    Each entity has at most one such row, so the value is one per entity, like the entity's own columns.
    """

    table: str
    column: str
    path: tuple[ForeignKey, ...]
    position: int = 0

    @property
    def key(self) -> str:
        """Its column name in the compiled frames (one per route and column)."""
        return "_p_" + "".join(f"{fk.name}>{fk.table}/" for fk in self.path) + self.column

    def __str__(self) -> str:
        return f"{self.table}.{self.column}"


@dataclass(frozen=True)
class BoundQuery:
    """A query ready to compile; ``target``/``where``/``assuming`` hold `BoundAggregation` nodes."""

    text: str
    task_type: str
    entity_table: str
    entity_column: str
    target: Condition
    where: Condition | None
    assuming: Condition | None
    aggregations: dict[str, BoundAggregation] = field(default_factory=dict)
    entity_ids: tuple | None = None
    classify: bool = False
    rank_top_k: int | None = None
    forecast_timeframes: int | None = None
    target_table: str | None = None  # the ranked table for link prediction
    label_separator: str | None = None  # a static target stored as delimited text ("a|b") is split by it
    parents: dict[str, ParentColumn] = field(default_factory=dict)  # parent columns read, by their key
    positive_class: object = None  # the class labelled 1 when a two-class column is the target

    @property
    def masked_input_columns(self) -> list[str]:
        """``table.column`` of a static target: the model stage hides it from every input (it is the label)."""
        if self.is_temporal or not isinstance(self.target, Column | ParentColumn):
            return []
        table = self.target.table if isinstance(self.target, ParentColumn) else self.entity_table
        return [f"{table}.{self.target.column}"]

    @property
    def is_temporal(self) -> bool:
        """True when the target aggregates over a window after the anchor (else a static column target)."""
        return any(key.startswith("target") for key in self.aggregations)

    @property
    def target_window(self) -> Window | None:
        windows = [a.window for key, a in self.aggregations.items() if key.startswith("target")]
        return windows[0] if windows else None

    def explain(self) -> dict:
        """A JSON-able summary: task type, entity, target, windows, filters."""
        return {
            "task_type": self.task_type,
            "entity": {"table": self.entity_table, "column": self.entity_column},
            "target": describe_condition(self.target),
            "temporal": self.is_temporal,
            "windows": {
                key: {
                    "function": a.function,
                    "table": a.table,
                    "column": a.column or "*",
                    "window": a.window.describe(),
                    "via": [fk.name for fk in a.path],
                    "empty_window": "drop example" if a.drops_empty else "0",
                }
                for key, a in self.aggregations.items()
            },
            "where": describe_condition(self.where) if self.where is not None else None,
            "assuming": describe_condition(self.assuming) if self.assuming is not None else None,
            "entity_ids": list(self.entity_ids) if self.entity_ids else None,
            "rank_top_k": self.rank_top_k,
            "classify": self.classify,
            "forecast_timeframes": self.forecast_timeframes,
            "target_table": self.target_table,
            "parent_columns": [
                {"column": str(parent), "via": [fk.name for fk in parent.path]}
                for parent in self.parents.values()
            ],
            "positive_class": self.positive_class,
            "masked_input_columns": self.masked_input_columns,
        }


def describe_condition(node: object) -> str:
    """A bound condition as PQL text (for explain and messages): `render_condition`, with each bound
    aggregation's window as bound."""
    return render_condition(node, value=_describe_value)


def _describe_value(node: object) -> str:
    if isinstance(node, BoundAggregation):
        inner = f"{node.table}.{node.column or '*'}"
        where = " WHERE " + describe_condition(node.where) if node.where else ""
        return f"{node.function}({inner}{where}, {node.window.describe()})"
    if isinstance(node, ParentColumn):
        return str(node)
    return render_value(node)
    if isinstance(node, Literal):
        return repr(node.value)
    if isinstance(node, Comparison):
        return f"{describe_condition(node.left)} {node.operator} {describe_condition(node.right)}"
    if isinstance(node, Membership):
        options = ", ".join(describe_condition(option) for option in node.options)
        return f"{describe_condition(node.value)} {'NOT IN' if node.negated else 'IN'} ({options})"
    if isinstance(node, NullCheck):
        return f"{describe_condition(node.value)} IS {'NOT ' if node.negated else ''}NULL"
    if isinstance(node, BoolOp):
        return "(" + f" {node.operator} ".join(describe_condition(item) for item in node.items) + ")"
    if isinstance(node, Not):
        return f"NOT {describe_condition(node.item)}"
    return str(node)
