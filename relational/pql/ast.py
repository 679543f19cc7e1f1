"""The parsed form of a predictive query: small immutable nodes that remember where they start."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "Aggregation",
    "BoolOp",
    "Column",
    "Comparison",
    "Condition",
    "Literal",
    "Membership",
    "Not",
    "NullCheck",
    "Query",
    "Value",
]


@dataclass(frozen=True)
class Literal:
    """A constant: number, string, boolean, null or a date/time (kept as text until bound)."""

    value: object
    kind: str  # number | string | boolean | null | datetime
    position: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Column:
    """``table.column`` (``column`` is ``*`` for whole rows inside COUNT), optionally ``VIA fk ...``.

    ``via`` pins the foreign keys the route to the entity must use (``VIA flights.origin``, or ``VIA origin``
    whose ``table`` is empty); a VIA item itself has no ``via``.
    """

    table: str
    column: str
    position: int = field(default=0, compare=False)
    via: tuple[Column, ...] = ()

    def __str__(self) -> str:
        return f"{self.table}.{self.column}" if self.table else self.column


@dataclass(frozen=True)
class Aggregation:
    """``AGG(table.column [WHERE cond], start, end, unit)`` over the window (anchor+start, anchor+end]."""

    function: str
    target: Column
    start: float  # -inf allowed
    end: float
    unit: str
    where: Condition | None = None
    position: int = field(default=0, compare=False)

    @property
    def via(self) -> tuple[Column, ...]:
        """The foreign keys pinned after the aggregated column (``COUNT(flights.* VIA flights.origin, ...)``)."""
        return self.target.via


@dataclass(frozen=True)
class Comparison:
    left: Value
    operator: str  # = != < <= > >=
    right: Literal
    position: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Membership:
    value: Value
    options: tuple[Literal, ...]
    negated: bool = False
    position: int = field(default=0, compare=False)


@dataclass(frozen=True)
class NullCheck:
    value: Value
    negated: bool = False  # IS NOT NULL
    position: int = field(default=0, compare=False)


@dataclass(frozen=True)
class BoolOp:
    operator: str  # AND | OR
    items: tuple[Condition, ...]
    position: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Not:
    item: Condition
    position: int = field(default=0, compare=False)


Value = Aggregation | Column | Literal
Condition = Comparison | Membership | NullCheck | BoolOp | Not | Aggregation | Column


@dataclass(frozen=True)
class Query:
    """A whole predictive query as written (names not yet matched to the graph)."""

    text: str
    target: Condition
    entity: Column
    where: Condition | None = None
    assuming: Condition | None = None
    entity_ids: tuple[Literal, ...] | None = None  # FOR t.pk = x / IN (...)
    classify: bool = False
    rank_top_k: int | None = None
    forecast_timeframes: int | None = None
