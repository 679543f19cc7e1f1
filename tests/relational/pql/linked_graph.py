"""A small graph for the Kumo query shapes: parents many-to-one (regions <- users, reports <- transactions),
two foreign keys between the same tables (flights.origin and flights.dest -> airports), two-class columns."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import polars as pl
import pytest

from relational.pql.anchors import AnchorPlan
from relational.pql.binder import bind_query
from relational.pql.errors import QueryError
from relational.pql.parser import parse_query
from relational.pql.training_table import TrainingTable, build_training_table
from tests.support.pql_helpers import in_memory_graph

GRAPH = """\
tables:
  regions: {source: regions.parquet, primary_key: region_id, stypes: {inhabitants: numerical, kind: categorical}}
  users:
    source: users.parquet
    primary_key: user_id
    time_column: created
    foreign_keys: {region_id: regions}
    stypes: {churned: categorical, vip: categorical, tier: categorical, country: categorical}
  orders:
    source: orders.parquet
    primary_key: order_id
    time_column: at
    foreign_keys: {user_id: users}
    stypes: {status: categorical, amount: numerical, discount: numerical, gift: categorical}
  reports: {source: reports.parquet, primary_key: report_id, stypes: {is_fraud: categorical, kind: categorical}}
  transactions:
    source: transactions.parquet
    primary_key: tx_id
    time_column: at
    foreign_keys: {report_id: reports, user_id: users}
  airports: {source: airports.parquet, primary_key: faa, stypes: {elevation: numerical}}
  flights:
    source: flights.parquet
    primary_key: flight_id
    time_column: at
    foreign_keys: {origin: airports, dest: airports}
    stypes: {delay: numerical, late: categorical}
"""
START = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
DAY = 86400


def write_linked_graph(directory: Path) -> Path:
    """Write the tables (seeded, so every run sees the same data) and graph.yaml; return its path."""
    rng = random.Random(7)

    def day(low: int, high: int) -> dt.datetime:
        return START + dt.timedelta(days=rng.randrange(low, high), hours=rng.randrange(24))

    def write(name: str, columns: dict) -> None:
        pl.DataFrame(columns).write_parquet(directory / f"{name}.parquet")

    write(
        "regions",
        {"region_id": [1, 2, 3], "inhabitants": [100.0, 5000.0, None], "kind": ["city", "village", None]},
    )
    n = 30
    write("users", {
        "user_id": list(range(n)),
        "created": [START + dt.timedelta(days=i * 3) for i in range(n)],
        "churned": [rng.choice([True, False, None]) for _ in range(n)],
        "vip": [rng.choice(["Yes", "no", None]) for _ in range(n)],
        "tier": [rng.choice(["gold", "silver"]) for _ in range(n)],
        "country": [rng.choice(["fr", "de", "it"]) for _ in range(n)],
        "region_id": [rng.choice([1, 2, 3, None, 9]) for _ in range(n)],  # 9 dangles
    })  # fmt: skip
    m = 600
    write("orders", {
        "order_id": list(range(m)),
        "user_id": [rng.choice([*range(n), 99]) for _ in range(m)],  # 99 dangles
        "at": [day(0, 300) for _ in range(m)],
        "status": [rng.choice(["done", "open", None]) for _ in range(m)],
        "amount": [float(rng.randrange(200)) for _ in range(m)],
        "discount": [rng.choice([0.0, 0.1, 0.2, None]) for _ in range(m)],
        "gift": [rng.choice([True, False, False, None]) for _ in range(m)],
    })  # fmt: skip
    write("reports", {"report_id": list(range(10)), "is_fraud": [rng.choice([True, False, None]) for _ in range(10)],
                      "kind": [rng.choice(["a", "b", "c"]) for _ in range(10)]})  # fmt: skip
    k = 200
    write("transactions", {
        "tx_id": list(range(k)),
        "report_id": [rng.choice([*range(10), None, 99]) for _ in range(k)],  # None and 99: no parent
        "user_id": [rng.randrange(n) for _ in range(k)],
        "at": [day(0, 300) for _ in range(k)],
    })  # fmt: skip
    write("airports", {"faa": ["EWR", "JFK", "LGA"], "elevation": [18.0, 13.0, 22.0]})
    f = 500
    write("flights", {
        "flight_id": list(range(f)),
        "origin": [rng.choice(["EWR", "JFK", "LGA"]) for _ in range(f)],
        "dest": [rng.choice(["EWR", "JFK", "LGA"]) for _ in range(f)],
        "at": [day(0, 300) for _ in range(f)],
        "delay": [float(rng.randrange(-10, 120)) for _ in range(f)],
        "late": [rng.choice(["Y", "N"]) for _ in range(f)],
    })  # fmt: skip
    (directory / "graph.yaml").write_text(GRAPH)
    return directory / "graph.yaml"


def linked_graph(directory: Path):
    """(schema, validated tables) of the linked graph written into ``directory``."""
    return in_memory_graph(write_linked_graph(directory))


def day_seconds(days: int) -> int:
    return int(START.timestamp()) + days * DAY


PLAN = AnchorPlan(
    timestamps={
        "train": [day_seconds(d) for d in (60, 90, 120, 150)],
        "val": [day_seconds(200)],
        "test": [day_seconds(240)],
    }
)


def build(graph, query: str, plan: AnchorPlan = PLAN) -> TrainingTable:
    """The training table of ``query`` on the linked graph."""
    schema, tables = graph
    return build_training_table(query, schema, tables, plan)


def refusal(graph, query: str) -> QueryError:
    """The error binding ``query`` raises (with the tables, so types and classes are checked too)."""
    schema, tables = graph
    with pytest.raises(QueryError) as info:
        bind_query(parse_query(query), schema, tables)
    return info.value


def suggested_fixes(error: QueryError) -> list[str]:
    """The rewritten queries an error message shows (between backquotes, starting with PREDICT)."""
    return [part for part in error.message.split("`") if part.startswith("PREDICT ")]


def caret_at(error: QueryError, fragment: str) -> None:
    """The caret points at the first occurrence of ``fragment`` in the query, in the message too."""
    assert error.position == error.query.index(fragment), (error.position, error.query.index(fragment))
    lines = str(error).splitlines()
    assert lines[-1].index("^") - 2 == error.position and lines[-2].strip() == error.query.strip()
