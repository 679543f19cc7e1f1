"""Property tests: compiled training tables equal a brute-force plain-Python reference on random databases.

The reference (`brute_force`) applies the documented semantics directly, row by row: window (anchor+start,
anchor+end], COUNT/SUM of an empty window are 0 and other aggregations drop the example, a comparison with a
missing value is false, entities exist from their creation time, WHERE reads the past (a condition on the
target table's rows filters the rows the target reads, a parent's column filters entities), ASSUMING the
future (a condition on rows: every row in the target's span satisfies it), VIA picks one of two foreign
keys, static targets read the entity's or a parent's column, and two classes make a binary label.
"""

from __future__ import annotations

import math
import operator

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from relational.pql.anchors import AnchorPlan
from relational.pql.training_table import build_training_table
from relational.schema import GraphSchema
from tests.relational.pql.brute_force import (
    DAY,
    Agg,
    Context,
    Static,
    Temporal,
    World,
    positive_class,
    reference_static,
    reference_temporal,
)
from tests.relational.pql.random_shop import SPEC, databases, validated_tables

OPS = {">": operator.gt, "=": operator.eq, "<=": operator.le, "!=": operator.ne, ">=": operator.ge}


# -- query generators: the query text and its meaning for the reference ---------------------------------


def _value(row: dict | None, column: str):
    return None if row is None else row[column]


def _above(value, threshold) -> bool:
    return value is not None and value > threshold


def _classes(world: World, values: list) -> tuple[str, object]:
    positive = positive_class({value for value in values if value is not None})
    return (
        ("binary_classification", positive) if positive is not None else ("multiclass_classification", None)
    )


def _joined(parts: list[str]) -> str:
    return " AND ".join(f"({part})" if " OR " in part else part for part in parts)


def _single_target(draw, key: str, via: str) -> tuple[str, list[Agg], object, object]:
    """One aggregation over orders or items, with an optional inner WHERE and comparison."""
    tables = [("orders", "*"), ("orders", "amount"), ("orders", "qty"), ("orders", "status")]
    tables += [("items", "price"), ("items", "*")] if key == "user_id" else []
    table, column = draw(st.sampled_from(tables))
    functions = ["COUNT"] if column == "*" else ["COUNT", "COUNT_DISTINCT", "FIRST", "LAST"]
    functions += ["SUM", "AVG", "MIN", "MAX"] if column in {"amount", "price", "qty"} else []
    function = draw(st.sampled_from(functions))
    start = draw(st.integers(0, 3))
    end = start + draw(st.integers(1, 6))
    inner_text, inner = "", None
    if table == "orders" and draw(st.booleans()):
        inner_text, inner = draw(st.sampled_from([
            (" WHERE orders.status = 'done'", lambda r: r["status"] == "done"),
            (" WHERE orders.amount > 3", lambda r: _above(r["amount"], 3)),
        ]))  # fmt: skip
    agg = Agg(function, table, column, start, end, inner, key)
    text = f"{function}({table}.{column}{via if table == 'orders' else ''}{inner_text}, {start}, {end}, days)"
    numeric = function in {"COUNT", "COUNT_DISTINCT", "SUM", "AVG", "MIN", "MAX"} or column != "status"
    compare = None
    if numeric and draw(st.booleans()):
        compare = draw(st.sampled_from([(">", 2), ("=", 0), ("<=", 4), ("!=", 1)]))
    elif not numeric and draw(st.booleans()):
        compare = ("=", "done")
    if compare is not None:
        text += f" {compare[0]} " + (f"'{compare[1]}'" if isinstance(compare[1], str) else str(compare[1]))

    def label(world, values):
        value = values[0]
        if compare is not None:
            return int(value is not None and OPS[compare[0]](value, compare[1]))
        if value is None:
            return None
        if column == "status" and function in {"FIRST", "LAST"}:
            _, positive = _classes(world, [order["status"] for order in world.orders])
            return int(value == positive) if positive is not None else value
        return float(value)

    def task(world):
        if compare is not None:
            return "binary_classification", None
        if column == "status" and function in {"FIRST", "LAST"}:
            return _classes(world, [order["status"] for order in world.orders])
        return "regression", None

    return text, [agg], label, task


@st.composite
def user_queries(draw) -> Temporal:
    if draw(st.integers(0, 2)) == 0:  # two windows: ASSUMING on rows spans both
        s1, s2 = draw(st.integers(0, 3)), draw(st.integers(0, 3))
        e1, e2 = s1 + draw(st.integers(1, 5)), s2 + draw(st.integers(1, 5))
        target = f"COUNT(orders.*, {s1}, {e1}, days) > 0 OR SUM(orders.amount, {s2}, {e2}, days) > 3"
        targets = [Agg("COUNT", "orders", "*", s1, e1), Agg("SUM", "orders", "amount", s2, e2)]

        def label(world, values):
            return int(values[0] > 0 or values[1] > 3)

        def task(world):
            return "binary_classification", None
    else:
        target, targets, label, task = _single_target(draw, "user_id", "")
    options = [
        ("users.country = 'a'", lambda c: c.entity["country"] == "a"),
        ("COUNT(orders.*, -5, 0, days) > 0", lambda c: Agg("COUNT", "orders", "*", -5, 0).value(c.world, c.entity_id, c.anchor)[0] > 0),
        ("NOT users.country IN ('b') OR SUM(orders.amount, -INF, 0) >= 5",
         lambda c: c.entity["country"] != "b" or Agg("SUM", "orders", "amount", -math.inf, 0).value(c.world, c.entity_id, c.anchor)[0] >= 5),
        ("regions.inhabitants > 4", lambda c: _above(_value(c.world.region(c.entity), "inhabitants"), 4)),
        ("regions.kind = 'x' OR users.flag = TRUE", lambda c: _value(c.world.region(c.entity), "kind") == "x" or c.entity["flag"] is True),
    ]  # fmt: skip
    chosen = draw(st.lists(st.sampled_from(options), max_size=2, unique_by=lambda o: o[0]))
    where_text = [text for text, _ in chosen]
    if all(agg.table == "orders" for agg in targets) and draw(st.booleans()):  # filters the target's rows
        where_text.insert(draw(st.integers(0, len(where_text))), "orders.status = 'done'")
        targets = [Agg(a.function, a.table, a.column, a.start, a.end,
                       lambda r, inner=a.inner: r["status"] == "done" and (inner is None or inner(r)), a.key)
                   for a in targets]  # fmt: skip
    orders, items = Agg("COUNT", "orders", "*", 0, 0), Agg("COUNT", "items", "*", 0, 0)
    assuming = draw(st.sampled_from([
        None,
        ("COUNT(orders.*, 0, 4, days) > 0", lambda c: Agg("COUNT", "orders", "*", 0, 4).value(c.world, c.entity_id, c.anchor)[0] > 0),
        ("orders.status = 'done'", lambda c: c.every(orders, lambda r: r["status"] == "done")),
        ("NOT orders.amount > 5", lambda c: c.every(orders, lambda r: not _above(r["amount"], 5))),
        ("orders.qty >= 0 OR COUNT(orders.*, 0, 4, days) > 1",
         lambda c: c.every(orders, lambda r: r["qty"] is not None and r["qty"] >= 0)
         or Agg("COUNT", "orders", "*", 0, 4).value(c.world, c.entity_id, c.anchor)[0] > 1),
        ("items.price > 3", lambda c: c.every(items, lambda r: _above(r["price"], 3))),
        ("users.country = 'a' AND orders.status IS NOT NULL",
         lambda c: c.entity["country"] == "a" and c.every(orders, lambda r: r["status"] is not None)),
    ]))  # fmt: skip
    text = f"PREDICT {target} FOR EACH users.user_id"
    text += f" WHERE {_joined(where_text)}" if where_text else ""
    text += f" ASSUMING {assuming[0]}" if assuming else ""
    return Temporal(text, "users", targets, label, task, [condition for _, condition in chosen],
                    assuming[1] if assuming else None)  # fmt: skip


@st.composite
def store_queries(draw) -> Temporal:
    """Stores are reached from orders through two keys: every aggregation names one with VIA."""
    key = draw(st.sampled_from(["store_id", "pickup_id"]))
    other = "pickup_id" if key == "store_id" else "store_id"
    via = draw(st.sampled_from([f" VIA orders.{key}", f" VIA {key}"]))
    target, targets, label, task = _single_target(draw, key, via)
    options = [
        ("stores.size > 2", lambda c: _above(c.entity["size"], 2)),
        (f"COUNT(orders.* VIA orders.{other}, -5, 0, days) > 0",
         lambda c: Agg("COUNT", "orders", "*", -5, 0, key=other).value(c.world, c.entity_id, c.anchor)[0] > 0),
    ]  # fmt: skip
    chosen = draw(st.lists(st.sampled_from(options), max_size=2, unique_by=lambda o: o[0]))
    assuming = draw(st.sampled_from([
        None,
        ("orders.status = 'done'", lambda c: c.every(Agg("COUNT", "orders", "*", 0, 0, key=key), lambda r: r["status"] == "done")),
        (f"COUNT(orders.* VIA orders.{key}, 0, 3, days) > 0",
         lambda c: Agg("COUNT", "orders", "*", 0, 3, key=key).value(c.world, c.entity_id, c.anchor)[0] > 0),
    ]))  # fmt: skip
    text = f"PREDICT {target} FOR EACH stores.store_id"
    text += f" WHERE {_joined([t for t, _ in chosen])}" if chosen else ""
    text += f" ASSUMING {assuming[0]}" if assuming else ""
    return Temporal(
        text, "stores", targets, label, task, [c for _, c in chosen], assuming[1] if assuming else None
    )


def _known_user(context: Context) -> dict | None:
    """The order's user, if it existed at the anchor (a parent row created later reads as missing)."""
    user = context.world.user(context.entity["user_id"])
    return user if user is not None and user["created"] <= context.anchor else None


@st.composite
def order_queries(draw) -> Temporal:
    """Orders filtered by their user (a time-stamped parent) and the user's region (two hops)."""
    end = draw(st.integers(1, 4))
    where = draw(st.sampled_from([
        ("users.country = 'a'", lambda c: _value(_known_user(c), "country") == "a"),
        ("regions.kind = 'x'", lambda c: _value(c.world.region(_known_user(c)), "kind") == "x"),
        ("users.flag IS NULL", lambda c: _value(_known_user(c), "flag") is None),
    ]))  # fmt: skip
    text = f"PREDICT COUNT(items.*, 0, {end}, days) FOR EACH orders.order_id WHERE {where[0]}"
    return Temporal(text, "orders", [Agg("COUNT", "items", "*", 0, end, key="order_id")],
                    lambda world, values: float(values[0]), lambda world: ("regression", None), [where[1]])  # fmt: skip


def _stores_of(key: str):
    return lambda world, order: world.stores.get(order[key])


@st.composite
def static_queries(draw) -> Static:
    """A static target: the entity's column, or a parent's (one or two hops, or one of two keys with VIA)."""
    entity = draw(st.sampled_from(["users", "orders"]))
    if entity == "users":
        user = lambda world, row: row  # noqa: E731
        region = lambda world, row: world.region(row)  # noqa: E731
        routes = [("users", user, ""), ("regions", region, "")]
        options = [("regions.inhabitants > 4", lambda w, r: _above(_value(w.region(r), "inhabitants"), 4)),
                   ("users.country = 'a'", lambda w, r: r["country"] == "a")]  # fmt: skip
    else:
        user = lambda world, row: world.user(row["user_id"])  # noqa: E731
        region = lambda world, row: world.region(world.user(row["user_id"]))  # noqa: E731
        routes = [("users", user, ""), ("regions", region, ""), ("stores", _stores_of("store_id"), " VIA orders.store_id"),
                  ("stores", _stores_of("pickup_id"), " VIA pickup_id")]  # fmt: skip
        options = [("orders.amount > 3", lambda w, r: _above(r["amount"], 3)),
                   ("regions.kind = 'y'", lambda w, r: _value(region(w, r), "kind") == "y"),
                   ("users.country = 'b' OR orders.qty IS NULL",
                    lambda w, r: _value(user(w, r), "country") == "b" or r["qty"] is None)]  # fmt: skip
    table, route, via = draw(st.sampled_from(routes))
    column = draw(st.sampled_from({"users": ["country", "flag"], "regions": ["kind", "inhabitants"],
                                   "stores": ["label", "size"]}[table]))  # fmt: skip
    everything = {"users": lambda w: w.users, "regions": lambda w: list(w.regions.values()),
                  "stores": lambda w: list(w.stores.values())}[table]  # fmt: skip

    def task(world):
        if column == "flag":
            return "binary_classification", positive_class(set(), boolean=True)
        if column in {"inhabitants", "size"}:
            return "regression", None
        return _classes(world, [row[column] for row in everything(world)])

    def value(world, row):
        found = _value(route(world, row), column)
        return float(found) if column in {"inhabitants", "size"} and found is not None else found

    chosen = draw(st.lists(st.sampled_from(options), max_size=2, unique_by=lambda o: o[0]))
    text = f"PREDICT {table}.{column}{via} FOR EACH {entity}.{'user_id' if entity == 'users' else 'order_id'}"
    text += f" WHERE {_joined([t for t, _ in chosen])}" if chosen else ""
    return Static(text, entity, value, task, [c for _, c in chosen])


# -- the properties ------------------------------------------------------------------------------------


def build(database: dict, query: str, anchor_days: list[int] | None = None):
    built = validated_tables(database)
    schema = GraphSchema.from_built_tables(SPEC, built)
    tables = {name: table.frame for name, table in built.items()}
    plan = AnchorPlan(timestamps={"train": [day * DAY for day in anchor_days or []]})
    return build_training_table(query, schema, tables, plan, refuse_degenerate=False)


def assert_same_rows(got: list[tuple], expected: list[tuple], query: str) -> None:
    assert [row[:2] for row in got] == [row[:2] for row in expected], query
    for (_, _, ours), (_, _, theirs) in zip(got, expected, strict=True):
        if isinstance(theirs, float):
            assert math.isclose(float(ours), theirs, rel_tol=1e-12), query
        else:
            assert ours == theirs and type(ours) is type(theirs), (query, ours, theirs)


def check_temporal(database: dict, query: Temporal, anchor_days: list[int]) -> None:
    result = build(database, query.text, anchor_days)
    world = World.of(database)
    assert (result.meta["task_type"], result.meta["positive_class"]) == query.task_type(world), query.text
    got = sorted(result.table.select("entity", "anchor_time", "label").rows())
    assert_same_rows(got, reference_temporal(query, world, sorted(anchor_days)), query.text)
    assert result.meta["leakage_audit"]["passed"]


anchor_lists = st.lists(st.integers(-2, 22), min_size=1, max_size=4, unique=True)


@settings(deadline=None, max_examples=200)
@given(databases(), user_queries(), anchor_lists)
def test_user_queries_equal_brute_force(database, query, anchor_days):
    check_temporal(database, query, anchor_days)


@settings(deadline=None, max_examples=200)
@given(databases(), st.one_of(store_queries(), order_queries()), anchor_lists)
def test_via_and_parent_filters_equal_brute_force(database, query, anchor_days):
    check_temporal(database, query, anchor_days)


@settings(deadline=None, max_examples=200)
@given(databases(), static_queries())
def test_static_targets_equal_brute_force(database, query):
    result = build(database, query.text)
    world = World.of(database)
    assert (result.meta["task_type"], result.meta["positive_class"]) == query.task_type(world), query.text
    table, column = query.text.split()[1].split(".")
    assert result.meta["masked_input_columns"] == [f"{table}.{column}"]
    got = sorted(
        result.table.select("entity", "anchor_time", "label").rows(), key=lambda r: (r[0], r[1] or 0)
    )
    assert_same_rows(got, reference_static(query, world), query.text)
    n = result.table.height  # 80/10/10 by the entity's time
    expected = {"train": sum(i / n < 0.8 for i in range(n)), "val": sum(0.8 <= i / n < 0.9 for i in range(n))}
    assert result.meta["rows"]["train"] == expected["train"] and result.meta["rows"]["val"] == expected["val"]
    times = {
        split: result.table.filter(pl.col("split") == split)["anchor_time"]
        for split in ("train", "val", "test")
    }
    for earlier, later in (("train", "val"), ("val", "test")):
        if times[earlier].len() and times[later].len():
            assert times[earlier].max() <= times[later].min(), query.text
