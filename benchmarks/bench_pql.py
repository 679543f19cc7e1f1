"""Training-table build time: our polars compiler against DuckDB running the equivalent SQL, same run.

Data: completejourney transactions (1.47 M rows) from ../shared/data, 50 weekly anchors. Query:
    PREDICT COUNT(transactions.*, 0, 7, days) = 0 FOR EACH household.household_id
        WHERE COUNT(transactions.*, -28, 0, days) > 0
(churn: an active household that buys nothing next week). Both read the same validated tables in
memory; both results are checked equal. The last line prints DuckDB time / our time (>= 1: we are faster).

    .venv/bin/python benchmarks/bench_pql.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import duckdb
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relational.graph_tables import ingest_in_memory  # noqa: E402
from relational.pql.anchors import AnchorPlan  # noqa: E402
from relational.pql.training_table import build_training_table  # noqa: E402
from relational.schema import GraphSchema  # noqa: E402
from relational.spec_loader import load_spec  # noqa: E402

QUERY = (
    "PREDICT COUNT(transactions.*, 0, 7, days) = 0 FOR EACH household.household_id "
    "WHERE COUNT(transactions.*, -28, 0, days) > 0"
)
SQL = """
WITH candidates AS (
    SELECT a.anchor_time, h._kumo_id AS node, h.household_id FROM anchors a CROSS JOIN household h
),
past AS (
    SELECT a.anchor_time, t._kumo_fk__household_id AS node, COUNT(*) AS n
    FROM anchors a JOIN transactions t
      ON t._kumo_time > a.anchor_time - 28 * 86400 AND t._kumo_time <= a.anchor_time
    WHERE t._kumo_fk__household_id IS NOT NULL
    GROUP BY 1, 2
),
future AS (
    SELECT a.anchor_time, t._kumo_fk__household_id AS node, COUNT(*) AS n
    FROM anchors a JOIN transactions t
      ON t._kumo_time > a.anchor_time AND t._kumo_time <= a.anchor_time + 7 * 86400
    WHERE t._kumo_fk__household_id IS NOT NULL
    GROUP BY 1, 2
)
SELECT c.household_id AS entity, c.anchor_time, CAST(COALESCE(f.n, 0) = 0 AS BIGINT) AS label
FROM candidates c
JOIN past p ON p.anchor_time = c.anchor_time AND p.node = c.node
LEFT JOIN future f ON f.anchor_time = c.anchor_time AND f.node = c.node
WHERE p.n > 0
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--data", default=os.environ.get("KUMO_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
    )
    args = parser.parse_args()
    os.environ["KUMO_SHARED_DATA"] = args.data
    spec = load_spec(ROOT / "tests" / "specs" / "completejourney.yaml")
    started = time.perf_counter()
    built = ingest_in_memory(spec)
    print(f"ingest (in memory, all tables): {time.perf_counter() - started:.2f} s")
    schema = GraphSchema.from_built_tables(spec, built)
    tables = {name: table.frame for name, table in built.items()}
    first = 1483228800 + 28 * 86400  # 2017-01-01 + 4 weeks
    anchors = [first + 7 * 86400 * k for k in range(50)]
    plan = AnchorPlan(timestamps={"train": anchors})

    ours_times, duck_times = [], []
    connection = duckdb.connect()
    connection.register("anchors", pl.DataFrame({"anchor_time": anchors}).to_arrow())
    connection.register("household", tables["household"].to_arrow())
    connection.register("transactions", tables["transactions"].select(
        "_kumo_time", "_kumo_fk__household_id").to_arrow())  # fmt: skip
    for _ in range(args.repeats):
        started = time.perf_counter()
        ours = build_training_table(QUERY, schema, tables, plan).table
        ours_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        reference = pl.from_arrow(connection.sql(SQL).to_arrow_table())
        duck_times.append(time.perf_counter() - started)

    ours_rows = ours.select("entity", "anchor_time", "label").sort("anchor_time", "entity")
    duck_rows = reference.select("entity", "anchor_time", "label").sort("anchor_time", "entity")
    if not ours_rows.equals(duck_rows):
        raise SystemExit(f"results differ: ours {ours_rows.shape}, duckdb {duck_rows.shape}")
    print(f"rows: {ours_rows.height}, positives: {int(ours_rows['label'].sum())}, anchors: {len(anchors)}")
    print(f"ours   min {min(ours_times):.3f} s  median {sorted(ours_times)[len(ours_times) // 2]:.3f} s")
    print(f"duckdb min {min(duck_times):.3f} s  median {sorted(duck_times)[len(duck_times) // 2]:.3f} s")
    print(f"ratio duckdb/ours (min times): {min(duck_times) / min(ours_times):.2f}x")


if __name__ == "__main__":
    main()
