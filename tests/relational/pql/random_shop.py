"""The random shop database the PQL property tests draw: its spec (regions, stores, users, orders, items),
column types, a hypothesis strategy for its rows, and the validated tables built from a draw."""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl
from hypothesis import strategies as st

from relational.spec_loader import load_spec
from relational.table_build import build_table
from tests.relational.pql.brute_force import DAY

__all__ = ["SPEC", "databases", "validated_tables"]

SPEC_TEXT = """\
tables:
  regions: {source: regions.parquet, primary_key: region_id, stypes: {inhabitants: numerical, kind: categorical}}
  stores: {source: stores.parquet, primary_key: store_id, stypes: {size: numerical, label: categorical}}
  users:
    source: users.parquet
    primary_key: user_id
    time_column: created
    foreign_keys: {region_id: regions}
    stypes: {country: categorical, flag: categorical}
  orders:
    source: orders.parquet
    primary_key: order_id
    time_column: at
    foreign_keys: {user_id: users, store_id: stores, pickup_id: stores}
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
SCHEMAS = {
    "regions": {"region_id": pl.Int64, "inhabitants": pl.Float64, "kind": pl.String},
    "stores": {"store_id": pl.Int64, "size": pl.Float64, "label": pl.String},
    "users": {"user_id": pl.Int64, "created": pl.Int64, "country": pl.String, "flag": pl.Boolean,
              "region_id": pl.Int64},
    "orders": {"order_id": pl.Int64, "user_id": pl.Int64, "store_id": pl.Int64, "pickup_id": pl.Int64,
               "at": pl.Int64, "amount": pl.Float64, "qty": pl.Int64, "status": pl.String},
    "items": {"item_id": pl.Int64, "order_id": pl.Int64, "price": pl.Float64},
}  # fmt: skip
maybe_amount = st.one_of(st.none(), st.integers(0, 9).map(float))


@st.composite
def databases(draw) -> dict:
    def column(strategy, n):
        return [draw(strategy) for _ in range(n)]

    n_regions, n_stores = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    classes = draw(st.sampled_from([("Y", "N"), ("up", "down"), ("Y", "N", "maybe")]))
    regions = {"region_id": list(range(1, n_regions + 1)), "inhabitants": column(maybe_amount, n_regions),
               "kind": column(st.sampled_from(["x", "y", None]), n_regions)}  # fmt: skip
    stores = {"store_id": list(range(100, 100 + n_stores)), "size": column(maybe_amount, n_stores),
              "label": column(st.sampled_from([*classes, None]), n_stores)}  # fmt: skip
    n_users = draw(st.integers(1, 5))
    users = {
        "user_id": list(range(10, 10 + n_users)),
        "created": column(st.one_of(st.none(), st.integers(0, 12)), n_users),
        "country": column(st.sampled_from(["a", "b"]), n_users),
        "flag": column(st.sampled_from([True, False, None]), n_users),
        "region_id": column(st.one_of(st.none(), st.integers(1, n_regions + 1)), n_users),  # the last dangles
    }
    n_orders = draw(st.integers(1, 25))
    orders = {
        "order_id": list(range(n_orders)),
        "user_id": column(st.integers(10, 10 + n_users), n_orders),  # the last id dangles
        "store_id": column(st.one_of(st.none(), st.integers(100, 100 + n_stores)), n_orders),
        "pickup_id": column(st.one_of(st.none(), st.integers(100, 99 + n_stores)), n_orders),
        "at": column(st.integers(0, 20), n_orders),
        "amount": column(maybe_amount, n_orders),
        "qty": column(st.one_of(st.none(), st.integers(-3, 9)), n_orders),
        "status": column(st.sampled_from(["done", "open", None]), n_orders),
    }
    n_items = draw(st.integers(1, 12))
    items = {"item_id": list(range(n_items)), "order_id": column(st.integers(0, n_orders - 1), n_items),
             "price": column(maybe_amount, n_items)}  # fmt: skip
    return {"regions": regions, "stores": stores, "users": users, "orders": orders, "items": items}


def validated_tables(database: dict) -> dict[str, pl.DataFrame]:
    raw = {name: pl.DataFrame(database[name], schema=SCHEMAS[name]) for name in SCHEMAS}
    raw["users"] = raw["users"].with_columns(pl.col("created") * DAY)
    raw["orders"] = raw["orders"].with_columns(pl.col("at") * DAY)
    built = {}
    for table in SCHEMAS:  # parents first
        parents = {p: built[p].parent_keys(SPEC.tables[p].primary_key_columns) for p in SPEC.parents(table)}
        built[table] = build_table(SPEC, table, raw[table], parents)
    return built
