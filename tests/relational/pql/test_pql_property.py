"""Property tests: compiled training tables equal a brute-force plain-Python reference on random databases.

The reference applies the documented semantics directly, row by row: window (anchor+start, anchor+end],
COUNT/SUM of an empty window are 0 and other aggregations drop the example, a comparison with a missing
value is false, entities exist from their creation time, WHERE reads the past and ASSUMING the future.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from relational.pql.anchors import AnchorPlan
from relational.pql.training_table import build_training_table
from relational.schema import GraphSchema
from relational.spec_loader import load_spec
from relational.table_build import build_table

DAY = 86400
SPEC_TEXT = """\
tables:
  users: {source: users.parquet, primary_key: user_id, time_column: created}
  orders:
    source: orders.parquet
    primary_key: order_id
    time_column: at
    foreign_keys: {user_id: users}
    stypes: {status: categorical, amount: numerical, qty: numerical}
  items:
    source: items.parquet
    primary_key: item_id
    time_from: {foreign_key: order_id}
    foreign_keys: {order_id: orders}
    stypes: {price: numerical}
"""
_SPEC_DIR = Path(tempfile.mkdtemp(prefix="pql-property-"))
(_SPEC_DIR / "graph.yaml").write_text(SPEC_TEXT)
SPEC = load_spec(_SPEC_DIR / "graph.yaml")

maybe_amount = st.one_of(st.none(), st.integers(0, 9).map(float))


@st.composite
def databases(draw):
    n_users = draw(st.integers(1, 5))
    users = {
        "user_id": list(range(10, 10 + n_users)),
        "created": [draw(st.one_of(st.none(), st.integers(0, 12))) for _ in range(n_users)],
        "country": [draw(st.sampled_from(["a", "b"])) for _ in range(n_users)],
    }
    n_orders = draw(st.integers(1, 25))
    orders = {
        "order_id": list(range(n_orders)),
        "user_id": [draw(st.integers(10, 10 + n_users)) for _ in range(n_orders)],  # the last id dangles
        "at": [draw(st.integers(0, 20)) for _ in range(n_orders)],
        "amount": [draw(maybe_amount) for _ in range(n_orders)],
        "qty": [draw(st.one_of(st.none(), st.integers(-3, 9))) for _ in range(n_orders)],
        "status": [draw(st.sampled_from(["done", "open", None])) for _ in range(n_orders)],
    }
    n_items = draw(st.integers(1, 12))
    items = {
        "item_id": list(range(n_items)),
        "order_id": [draw(st.integers(0, n_orders - 1)) for _ in range(n_items)],
        "price": [draw(maybe_amount) for _ in range(n_items)],
    }
    return users, orders, items


@st.composite
def queries(draw):
    table, column = draw(
        st.sampled_from(
            [
                ("orders", "*"),
                ("orders", "amount"),
                ("orders", "qty"),
                ("orders", "status"),
                ("items", "price"),
                ("items", "*"),
            ]
        )
    )
    functions = ["COUNT"] if column == "*" else ["COUNT", "COUNT_DISTINCT", "FIRST", "LAST"]
    if column in {"amount", "price", "qty"}:
        functions += ["SUM", "AVG", "MIN", "MAX"]
    function = draw(st.sampled_from(functions))
    start = draw(st.integers(0, 3))
    end = start + draw(st.integers(1, 6))
    inner = ""
    if table == "orders" and draw(st.booleans()):
        inner = draw(st.sampled_from([" WHERE orders.status = 'done'", " WHERE orders.amount > 3"]))
    target = f"{function}({table}.{column}{inner}, {start}, {end}, days)"
    numeric = function in {"COUNT", "COUNT_DISTINCT", "SUM", "AVG", "MIN", "MAX"} or column in {
        "amount",
        "price",
        "qty",
    }
    if numeric and draw(st.booleans()):
        target += draw(st.sampled_from([" > 2", " = 0", " <= 4", " != 1"]))
    elif not numeric:
        target += " = 'done'"
    query = f"PREDICT {target} FOR EACH users.user_id"
    if draw(st.booleans()):
        query += draw(
            st.sampled_from(
                [
                    " WHERE users.country = 'a'",
                    " WHERE COUNT(orders.*, -5, 0, days) > 0",
                    " WHERE NOT users.country IN ('b') OR SUM(orders.amount, -INF, 0) >= 5",
                ]
            )
        )
    if draw(st.booleans()):
        query += " ASSUMING COUNT(orders.*, 0, 4, days) > 0"
    return query


def validated_tables(database) -> dict[str, pl.DataFrame]:
    users, orders, items = database
    raw = {
        "users": pl.DataFrame(users, schema={"user_id": pl.Int64, "created": pl.Int64, "country": pl.String}),
        "orders": pl.DataFrame(
            orders,
            schema={
                "order_id": pl.Int64,
                "user_id": pl.Int64,
                "at": pl.Int64,
                "amount": pl.Float64,
                "qty": pl.Int64,
                "status": pl.String,
            },
        ).with_columns(pl.col("at") * DAY),
        "items": pl.DataFrame(items, schema={"item_id": pl.Int64, "order_id": pl.Int64, "price": pl.Float64}),
    }
    raw["users"] = raw["users"].with_columns(pl.col("created") * DAY)
    built = {}
    for table in ("users", "orders", "items"):
        parents = {p: built[p].parent_keys(SPEC.tables[p].primary_key_columns) for p in SPEC.parents(table)}
        built[table] = build_table(SPEC, table, raw[table], parents)
    return built


# -- the brute-force reference -------------------------------------------------------------------


def reference_table(query: str, database, anchors: list[int]) -> list[tuple]:
    users, orders, items = database
    order_rows = [dict(zip(orders, values, strict=True)) for values in zip(*orders.values(), strict=True)]
    order_by_id = {row["order_id"]: row for row in order_rows}
    item_rows = []
    for values in zip(*items.values(), strict=True):
        row = dict(zip(items, values, strict=True))
        parent = order_by_id[row["order_id"]]
        item_rows.append({**row, "user_id": parent["user_id"], "at": parent["at"]})
    spec = _reference_parse(query)
    rows = []
    for anchor_day in anchors:
        for index, user in enumerate(users["user_id"]):
            created = users["created"][index]
            if created is None or created > anchor_day:
                continue  # ingest drops rows with no time; others exist from their creation
            user_row = {"user_id": user, "country": users["country"][index]}
            source = order_rows if spec["table"] == "orders" else item_rows
            value, empty = _aggregate(spec, source, user, anchor_day)
            if spec["where"] and not _where(spec["where"], user_row, order_rows, anchor_day):
                continue
            if spec["assuming"] and _aggregate({"function": "COUNT", "column": "*", "inner": None, "start": 0,
                                                "end": 4}, order_rows, user, anchor_day)[0] <= 0:  # fmt: skip
                continue
            if empty and spec["function"] not in {"COUNT", "SUM"}:
                continue
            if spec["compare"] is not None:
                operator, threshold = spec["compare"]
                label = int(value is not None and _OPS[operator](value, threshold))
            else:
                if value is None:
                    continue
                label = float(value)
            rows.append((user, anchor_day * DAY, label))
    return sorted(rows)


_OPS = {
    ">": lambda a, b: a > b,
    "=": lambda a, b: a == b,
    "<=": lambda a, b: a <= b,
    "!=": lambda a, b: a != b,
    ">=": lambda a, b: a >= b,
}


def _reference_parse(query: str) -> dict:
    """Read back the few shapes `queries()` generates (independent of the real parser)."""
    head, _, rest = query.removeprefix("PREDICT ").partition(" FOR EACH users.user_id")
    function, _, inside = head.partition("(")
    inside, _, comparison = inside.rpartition(")")
    target, *window = [part.strip() for part in inside.split(",")]
    table_column, _, inner = target.partition(" WHERE ")
    table, _, column = table_column.partition(".")
    compare = None
    if comparison.strip():
        operator, value = comparison.split()
        compare = (operator, value.strip("'") if "'" in value else float(value))
    where = rest.partition(" WHERE ")[2].partition(" ASSUMING ")[0] or None
    return {
        "function": function, "table": table, "column": column, "inner": inner or None,
        "start": int(window[0]), "end": int(window[1]), "compare": compare, "where": where,
        "assuming": " ASSUMING " in rest,
    }  # fmt: skip


def _aggregate(spec: dict, rows: list[dict], user: int, anchor_day: int) -> tuple[object, bool]:
    start, end = spec["start"], spec["end"]
    low = -math.inf if start == -math.inf else anchor_day + start
    chosen = [r for r in rows if r["user_id"] == user and low < r["at"] <= anchor_day + end]
    if spec["inner"] == "orders.status = 'done'":
        chosen = [r for r in chosen if r["status"] == "done"]
    elif spec["inner"] == "orders.amount > 3":
        chosen = [r for r in chosen if r["amount"] is not None and r["amount"] > 3]
    function, column = spec["function"], spec["column"]
    values = [r[column] for r in chosen] if column != "*" else chosen
    present = [v for v in values if v is not None] if column != "*" else values
    empty = not chosen
    if function == "COUNT":
        return len(present), empty
    if function == "SUM":
        return sum(present), empty
    if function == "COUNT_DISTINCT":
        return len(set(present)), empty
    if not present:
        return None, empty
    ordered = [r[column] for r in sorted(chosen, key=lambda r: r["at"]) if r[column] is not None]
    result = {
        "AVG": lambda: sum(present) / len(present),
        "MIN": lambda: min(present),
        "MAX": lambda: max(present),
        "FIRST": lambda: ordered[0],
        "LAST": lambda: ordered[-1],
    }[function]()
    return result, empty


def _where(where: str, user_row: dict, orders: list[dict], anchor_day: int) -> bool:
    if where == "users.country = 'a'":
        return user_row["country"] == "a"
    if where == "COUNT(orders.*, -5, 0, days) > 0":
        spec = {"function": "COUNT", "column": "*", "inner": None, "start": -5, "end": 0}
        return _aggregate(spec, orders, user_row["user_id"], anchor_day)[0] > 0
    spec = {"function": "SUM", "column": "amount", "inner": None, "start": -math.inf, "end": 0}
    total = _aggregate(spec, orders, user_row["user_id"], anchor_day)[0]
    return user_row["country"] not in ("b",) or total >= 5


# -- the property ---------------------------------------------------------------------------------


@given(databases(), queries(), st.lists(st.integers(-2, 22), min_size=1, max_size=4, unique=True))
def test_compiled_table_equals_brute_force(database, query, anchor_days):
    built = validated_tables(database)
    schema = GraphSchema.from_built_tables(SPEC, built)
    tables = {name: table.frame for name, table in built.items()}
    plan = AnchorPlan(timestamps={"train": [day * DAY for day in anchor_days]})
    result = build_training_table(query, schema, tables, plan)
    got = sorted(
        (entity, anchor, float(label) if isinstance(label, float) else label)
        for entity, anchor, label in result.table.select("entity", "anchor_time", "label").rows()
    )
    expected = reference_table(query, database, sorted(anchor_days))
    assert [row[:2] for row in got] == [row[:2] for row in expected], query
    for (_, _, ours), (_, _, theirs) in zip(got, expected, strict=True):
        if isinstance(theirs, float):
            assert math.isclose(float(ours), theirs, rel_tol=1e-12), query
        else:
            assert ours == theirs, query
    assert result.meta["leakage_audit"]["passed"]
