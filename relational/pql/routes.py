"""Foreign-key routes between tables: an aggregated table's rows up to the entity, or the entity up to a
parent table whose columns it reads. The shortest route wins; ``VIA`` pins foreign keys it must use, and
several shortest routes are an error that shows the VIA fix for each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from relational.pql.ast import Column
from relational.pql.errors import QueryError
from relational.schema import GraphSchema, TableSchema
from relational.spec import ForeignKey

__all__ = ["MAX_HOPS", "Route", "all_routes", "choose_route", "describe_route", "route_tables"]

MAX_HOPS = 4  # foreign keys in one route at most
Route = tuple[ForeignKey, ...]


class _Binder(Protocol):
    schema: GraphSchema

    def error(self, message: str, position: int) -> QueryError: ...

    def table(self, name: str, position: int) -> TableSchema: ...


def all_routes(schema: GraphSchema, start: str, goal: str) -> list[Route]:
    """Every chain of foreign keys (child to parent, no table twice, at most `MAX_HOPS`) from start to goal."""
    found: list[Route] = []

    def walk(name: str, route: Route, seen: frozenset[str]) -> None:
        if name == goal and route:
            found.append(route)
            return
        if len(route) == MAX_HOPS:
            return
        for fk in schema.tables[name].foreign_keys:
            if fk.table not in seen:
                walk(fk.table, (*route, fk), seen | {fk.table})

    walk(start, (), frozenset({start}))
    return found


def route_tables(route: Route, start: str) -> list[str]:
    """The table each foreign key of ``route`` belongs to."""
    return [start, *(fk.table for fk in route[:-1])]


def describe_route(route: Route) -> str:
    """The route's foreign keys, ``a->b``, for messages."""
    return "->".join(fk.name for fk in route)


def _hops(route: Route, start: str) -> set[tuple[str, str]]:
    return {(table, fk.name) for table, fk in zip(route_tables(route, start), route, strict=True)}


def choose_route(
    binder: _Binder,
    start: str,
    goal: str,
    via: tuple[Column, ...],
    position: int,
    fix: Callable[[tuple[Column, ...]], str],
    missing: str,
) -> Route:
    """The shortest route from ``start`` to ``goal`` using every foreign key in ``via``.

    ``fix(extra_via)`` renders the whole query with ``extra_via`` appended to the VIA list (for the message
    when several routes tie); ``missing`` is the message when no route links the tables at all.
    """
    routes = all_routes(binder.schema, start, goal)
    if not routes:
        raise binder.error(missing, position)
    pinned = []
    for item in via:
        key = _resolve_via(binder, item, routes, start, goal)
        if not any(key in _hops(route, start) for route in routes):
            raise binder.error(
                f"{key[0]}.{key[1]} is a foreign key, but no route from {start} to {goal} uses it (routes: "
                f"{', '.join(_label(route, start) for route in routes)})",
                item.position,
            )
        pinned.append(key)
    fitting = [route for route in routes if all(key in _hops(route, start) for key in pinned)]
    if not fitting:
        raise binder.error(
            f"no route from {start} to {goal} uses all of the VIA foreign keys (routes: "
            f"{', '.join(_label(route, start) for route in routes)})",
            via[0].position,
        )
    shortest = min(len(route) for route in fitting)
    best = [route for route in fitting if len(route) == shortest]
    if len(best) == 1:
        return best[0]
    fixes = " or ".join(f"`{fix(_distinguishing(route, best, start, pinned))}`" for route in best)
    raise binder.error(
        f"{start} reaches {goal} through several foreign keys ({' or '.join(map(describe_route, best))}); the "
        f"query cannot tell which one is meant: name it with VIA, e.g. {fixes}",
        position,
    )


def _label(route: Route, start: str) -> str:
    return "->".join(
        f"{table}.{fk.name}" for table, fk in zip(route_tables(route, start), route, strict=True)
    )


def _distinguishing(route: Route, rivals: list[Route], start: str, pinned: list) -> tuple[Column, ...]:
    """The fewest VIA items that single out ``route`` among ``rivals``: one foreign key, else all of them."""
    own = [(table, fk.name) for table, fk in zip(route_tables(route, start), route, strict=True)]
    others = [_hops(rival, start) for rival in rivals if rival is not route]
    for hop in own:
        if hop not in pinned and all(hop not in other for other in others):
            return (Column(hop[0], hop[1]),)
    return tuple(Column(table, name) for table, name in own if (table, name) not in pinned)


def _resolve_via(
    binder: _Binder, item: Column, routes: list[Route], start: str, goal: str
) -> tuple[str, str]:
    """``VIA table.column`` or ``VIA column`` as (table, foreign key name); unknown names fail at the item."""
    if item.table:
        table = binder.table(item.table, item.position)
        fk = _foreign_key(table, item.column)
        if fk is not None:
            return table.name, fk.name
        names = ", ".join(f"{table.name}.{key.name}" for key in table.foreign_keys) or "it has none"
        known = {column.lower() for column in table.stypes}
        what = "is not a foreign key" if item.column.lower() in known else "is no column of it"
        raise binder.error(
            f"VIA names a foreign key, and {table.name}.{item.column} {what} (foreign keys of {table.name}: {names})",
            item.position,
        )
    on_routes = dict.fromkeys(table for route in routes for table in route_tables(route, start))
    matches = [
        (table, fk)
        for table in on_routes
        if (fk := _foreign_key(binder.schema.tables[table], item.column)) is not None
    ]
    if len(matches) == 1:
        return matches[0][0], matches[0][1].name
    if matches:
        choices = " or ".join(f"VIA {table}.{fk.name}" for table, fk in matches)
        raise binder.error(f"VIA {item.column} is ambiguous: write {choices}", item.position)
    known = ", ".join(
        f"{table}.{fk.name}" for table in on_routes for fk in binder.schema.tables[table].foreign_keys
    )
    raise binder.error(
        f"no foreign key named {item.column!r} on the routes from {start} to {goal} (their foreign keys: {known})",
        item.position,
    )


def _foreign_key(table: TableSchema, name: str) -> ForeignKey | None:
    """The foreign key of ``table`` named ``name`` (or on that one column); exact case first."""
    for fold in (str, str.lower):
        found = [fk for fk in table.foreign_keys if fold(name) in {fold(fk.name), fold(",".join(fk.columns))}]
        if len(found) == 1:
            return found[0]
    return None
