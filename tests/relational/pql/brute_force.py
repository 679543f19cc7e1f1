"""A brute-force reading of the documented PQL semantics in plain Python, row by row, for the property tests.

It knows the property database (regions <- users <- orders -> stores through store_id AND pickup_id, items
-> orders) and none of the compiler: each query the tests generate comes with its meaning written here as
small Python functions (`Temporal`, `Static`), applied to every (entity, anchor) by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

DAY = 86400
PAIRS = (("true", "false"), ("yes", "no"), ("y", "n"), ("1", "0"), ("t", "f"))
DROPPING = {"AVG", "MIN", "MAX", "FIRST", "LAST", "COUNT_DISTINCT", "LIST_DISTINCT"}


def positive_class(values: set, boolean: bool = False) -> object:
    """The documented two-class rule: True for a boolean; the yes of a yes/no-like pair; else the larger."""
    if boolean:
        return True
    if len(values) != 2:
        return None
    lowered = {str(value).lower(): value for value in values}
    for yes, no in PAIRS:
        if set(lowered) == {yes, no}:
            return lowered[yes]
    return max(values)


@dataclass
class World:
    """The database as rows, as ingest keeps them (users without a creation time are dropped)."""

    users: list[dict]
    regions: dict[int, dict]
    stores: dict[int, dict]
    orders: list[dict]
    items: list[dict]  # each with its order's at, user_id, store_id and pickup_id

    @classmethod
    def of(cls, database: dict) -> World:
        def rows(columns: dict) -> list[dict]:
            return [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]

        orders = rows(database["orders"])
        by_id = {order["order_id"]: order for order in orders}
        items = []
        for item in rows(database["items"]):
            order = by_id[item["order_id"]]
            items.append({**item, **{k: order[k] for k in ("at", "user_id", "store_id", "pickup_id")}})
        return cls(
            users=[user for user in rows(database["users"]) if user["created"] is not None],
            regions={row["region_id"]: row for row in rows(database["regions"])},
            stores={row["store_id"]: row for row in rows(database["stores"])},
            orders=orders,
            items=items,
        )

    def user(self, user_id) -> dict | None:
        return next((user for user in self.users if user["user_id"] == user_id), None)

    def region(self, user: dict | None) -> dict | None:
        return None if user is None else self.regions.get(user["region_id"])


@dataclass(frozen=True)
class Agg:
    """An aggregation over rows of ``table`` whose ``key`` is the entity's id, in (anchor+start, anchor+end]."""

    function: str
    table: str  # orders | items
    column: str  # "*" for COUNT(table.*)
    start: float
    end: float
    inner: Callable[[dict], bool] | None = None
    key: str = "user_id"  # user_id / store_id / pickup_id / order_id

    def rows(self, world: World, entity, anchor: int, start=None, end=None) -> list[dict]:
        start = self.start if start is None else start
        end = self.end if end is None else end
        low = -math.inf if start == -math.inf else anchor + start
        source = world.orders if self.table == "orders" else world.items
        chosen = [row for row in source if row[self.key] == entity and low < row["at"] <= anchor + end]
        return [row for row in chosen if self.inner is None or self.inner(row)]

    def value(self, world: World, entity, anchor: int) -> tuple[object, bool]:
        """(value, whether the window is empty)."""
        chosen = self.rows(world, entity, anchor)
        if self.column == "*":
            return len(chosen), not chosen
        present = [
            row[self.column] for row in sorted(chosen, key=lambda r: r["at"]) if row[self.column] is not None
        ]
        if self.function == "COUNT":
            return len(present), not chosen
        if self.function == "SUM":
            return sum(present), not chosen
        if self.function == "COUNT_DISTINCT":
            return len(set(present)), not chosen
        if not present:
            return None, not chosen
        functions = {"AVG": lambda: sum(present) / len(present), "MIN": lambda: min(present),
                     "MAX": lambda: max(present), "FIRST": lambda: present[0], "LAST": lambda: present[-1]}  # fmt: skip
        return functions[self.function](), not chosen


@dataclass
class Context:
    """What a WHERE or ASSUMING condition may read for one (entity, anchor)."""

    world: World
    entity: dict
    entity_id: object
    anchor: int  # days
    span: tuple[float, float]  # the target's windows from the smallest start to the largest end

    def every(self, agg: Agg, condition: Callable[[dict], bool]) -> bool:
        """ASSUMING on rows: every row of the entity in the target's span satisfies ``condition``."""
        return all(condition(row) for row in agg.rows(self.world, self.entity_id, self.anchor, *self.span))


@dataclass
class Temporal:
    """A temporal query's meaning: entities, target aggregations, label, filters."""

    text: str
    entity: str  # users | stores | orders
    targets: list[Agg]
    label: Callable[[World, list], object]  # None: no example
    task_type: Callable[[World], tuple[str, object]]
    where: list[Callable[[Context], bool]] = field(default_factory=list)
    assuming: Callable[[Context], bool] | None = None


@dataclass
class Static:
    """A static query's meaning: one row per entity with a known value of ``value(world, entity row)``."""

    text: str
    entity: str  # users | orders
    value: Callable[[World, dict], object]
    task_type: Callable[[World], tuple[str, object]]
    where: list[Callable[[World, dict], bool]] = field(default_factory=list)


def entities(world: World, name: str, anchor: int | None = None) -> list[tuple[object, dict, int | None]]:
    """(id, row, time in days) of the entities that exist at ``anchor`` (all when None)."""
    if name == "users":
        rows = [(u["user_id"], u, u["created"]) for u in world.users]
    elif name == "stores":
        rows = [(store_id, row, None) for store_id, row in world.stores.items()]
    else:
        rows = [(o["order_id"], o, o["at"]) for o in world.orders]
    return [row for row in rows if anchor is None or row[2] is None or row[2] <= anchor]


def reference_temporal(query: Temporal, world: World, anchors: list[int]) -> list[tuple]:
    span = (min(a.start for a in query.targets), max(a.end for a in query.targets))
    rows = []
    for anchor in anchors:
        for entity_id, row, _ in entities(world, query.entity, anchor):
            context = Context(world, row, entity_id, anchor, span)
            if not all(condition(context) for condition in query.where):
                continue
            if query.assuming is not None and not query.assuming(context):
                continue
            values = [agg.value(world, entity_id, anchor) for agg in query.targets]
            if any(
                empty and agg.function in DROPPING
                for agg, (_, empty) in zip(query.targets, values, strict=True)
            ):
                continue
            label = query.label(world, [value for value, _ in values])
            if label is not None:
                rows.append((entity_id, anchor * DAY, label))
    return sorted(rows)


def reference_static(query: Static, world: World) -> list[tuple]:
    rows = []
    for entity_id, row, time in entities(world, query.entity):
        value = query.value(world, row)
        if value is None or not all(condition(world, row) for condition in query.where):
            continue
        _, positive = query.task_type(world)
        label = int(value == positive) if positive is not None else value
        rows.append((entity_id, None if time is None else time * DAY, label))
    return sorted(rows, key=lambda r: (r[0], r[1] or 0))
