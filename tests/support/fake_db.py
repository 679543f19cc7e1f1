"""A tiny synthetic relational database with knobs and deliberate dirt, used by most tests.

users (static, self-referencing) <- orders (event time, text timestamps) -> products (string keys);
reviews inherit their time from orders (+1 day); stores are implied by ``orders.store_id``.
Dirt: a null and a dangling ``orders.user_id``, a null time, 'NULL'/'' tokens, a constant column.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import numpy as np
import polars as pl

from kumo_assets.asset_keys import stage_of

SPEC = """\
tables:
  users:
    source: users.{ext}
    primary_key: user_id
    foreign_keys: {{referrer_id: users}}
    stypes: {{country: categorical}}
  products:
    source: products.{ext}
    primary_key: product_id
  stores:
    implied: true
    primary_key: store_id
  orders:
    source: orders.{ext}
    primary_key: order_id
    time_column: created_at
    foreign_keys: {{user_id: users, product_id: products, store_id: stores}}
  reviews:
    source: reviews.{ext}
    primary_key: review_id
    time_from: {{foreign_key: order_id, offset: 1 day}}
    foreign_keys: {{order_id: orders}}
"""

BASE_TIME = dt.datetime(2024, 1, 1)


def make_tables(n_users: int = 40, n_products: int = 12, n_orders: int = 300, seed: int = 0) -> dict:
    """The raw tables as polars frames, before any of our processing."""
    rng = np.random.default_rng(seed)
    users = pl.DataFrame(
        {
            "user_id": np.arange(1, n_users + 1),
            "country": rng.choice(["DE", "FR", "US", "NULL"], n_users),
            "signup": [BASE_TIME.date() - dt.timedelta(days=int(d)) for d in rng.integers(0, 400, n_users)],
            "age": np.where(rng.random(n_users) < 0.1, np.nan, rng.normal(40, 10, n_users)),
            "bio": [f"user number {i} likes to buy many useful things" for i in range(n_users)],
            "referrer_id": [None] + [int(r) for r in rng.integers(1, n_users + 1, n_users - 1)],
            "constant": ["same"] * n_users,
        }
    )
    products = pl.DataFrame(
        {
            "product_id": [f"P{i:03d}" for i in range(n_products)],
            "price": rng.gamma(2.0, 10.0, n_products).round(2),
            "tags": [["a|b", "b|c", "a|c|d"][i % 3] for i in range(n_products)],
        }
    )
    minutes = np.sort(rng.integers(0, 60 * 24 * 180, n_orders))
    created = [(BASE_TIME + dt.timedelta(minutes=int(m))).strftime("%Y-%m-%d %H:%M:%S") for m in minutes]
    user_ids: list = [int(u) for u in rng.integers(1, n_users + 1, n_orders)]
    user_ids[5] = None  # null foreign key: no edge, not dangling
    user_ids[7] = 10_000  # dangling foreign key
    created[11] = ""  # null event time: the row is dropped
    orders = pl.DataFrame(
        {
            "order_id": np.arange(100, 100 + n_orders),
            "user_id": pl.Series(user_ids, dtype=pl.Int64),
            "product_id": [f"P{int(p):03d}" for p in rng.integers(0, n_products, n_orders)],
            "store_id": rng.choice(["north", "south", "east"], n_orders),
            "amount": rng.gamma(2.0, 20.0, n_orders).round(2),
            "created_at": created,
        }
    )
    reviewed = rng.choice(orders["order_id"].to_numpy(), n_orders // 3, replace=False)
    reviews = pl.DataFrame(
        {
            "review_id": np.arange(len(reviewed)),
            "order_id": reviewed,
            "rating": rng.integers(1, 6, len(reviewed)),
        }
    )
    return {"users": users, "products": products, "orders": orders, "reviews": reviews}


def write_fake_db(
    root: Path, fmt: str = "parquet", tables: dict | None = None, spec: str | None = None
) -> Path:
    """Write the tables and graph.yaml under ``root``; return the spec path."""
    root.mkdir(parents=True, exist_ok=True)
    tables = make_tables() if tables is None else tables
    for name, frame in tables.items():
        if fmt == "csv":
            frame.write_csv(root / f"{name}.csv")
        else:
            frame.write_parquet(root / f"{name}.parquet")
    spec_path = root / "graph.yaml"
    spec_path.write_text(textwrap.dedent(spec or SPEC).format(ext=fmt))
    return spec_path


def data_assets(defs) -> list:
    """Every asset up to the training tables: what tests of the data path materialise (no model training)."""
    return [
        a
        for a in defs.assets
        if not any(
            stage_of(key) in {"model", "study", "best_model", "predictions", "embeddings"} for key in a.keys
        )
    ]
