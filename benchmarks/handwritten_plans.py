"""The hand-written baseline's feature plans for the example databases, and its command line.

Each plan names what a data scientist would aggregate per entity (`benchmarks/handwritten_baseline.py` builds
the features and fits LightGBM); column names are the published tables' own.

    .venv/bin/python benchmarks/handwritten_plans.py --plane DIR --graph completejourney --query churn
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root, for models/stores

from benchmarks.handwritten_baseline import (
    EventSource,
    FeaturePlan,
    build_features,
    fit_and_score,
    split_arrays,
)

COMPLETEJOURNEY = FeaturePlan(
    entity_table="demographics",
    entity_key="household_id",
    static=(
        "age",
        "income",
        "home_ownership",
        "marital_status",
        "household_size",
        "household_comp",
        "kids_count",
    ),
    events=(
        EventSource(
            "transactions",
            "household_id",
            numeric=("sales_value", "quantity", "retail_disc", "coupon_disc", "coupon_match_disc"),
            distinct=("basket_id", "product_id", "store_id"),
            visit="basket_id",
        ),
        EventSource("coupon_redemptions", "household_id", distinct=("coupon_upc", "campaign_id")),
    ),
)
NYCFLIGHTS13 = FeaturePlan(
    entity_table="planes",
    entity_key="tailnum",
    static=("year", "manufacturer", "model", "seats", "engines", "engine", "type"),
    events=(
        EventSource(
            "flights",
            "tailnum",
            numeric=("dep_delay", "arr_delay", "distance", "air_time"),
            distinct=("dest", "origin", "carrier"),
        ),
    ),
    windows_days=(7, 28, 91, 365),
    trend_days=7,
)
PLANS = {"completejourney": COMPLETEJOURNEY, "nycflights13": NYCFLIGHTS13}


def plan_tables(data_plane, graph: str, plan: FeaturePlan) -> dict[str, pl.DataFrame]:
    """The published tables a plan reads (its event sources and its entity table), from a data plane."""
    names = [source.table for source in plan.events] + ([plan.entity_table] if plan.entity_table else [])
    return {name: data_plane.get_frame(graph, "tables", f"{name}.parquet") for name in names}


def load_inputs(
    plane: str, graph: str, query: str, plan: FeaturePlan
) -> tuple[dict[str, pl.DataFrame], pl.DataFrame, str]:
    """The plan's tables, the query's training table and its task type, read from a data plane."""
    from stores.data_plane import DataPlane  # only the command line needs the product's data plane

    data_plane = DataPlane(root=plane)
    tables = plan_tables(data_plane, graph, plan)
    rows = data_plane.get_frame(graph, "training_tables", f"{query}.parquet")
    task_type = data_plane.get_json(graph, "training_tables", f"{query}.json")["task_type"]
    return tables, rows, task_type


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Build features and fit on one training table; print sizes, times, rounds and the VALIDATION metric."""
    from models.metrics import compute_metrics, tune_metric

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plane", required=True, help="the data plane root (KUMO_DATA_PLANE)")
    parser.add_argument("--graph", required=True, choices=sorted(PLANS))
    parser.add_argument("--query", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    plan = PLANS[args.graph]
    tables, rows, task_type = load_inputs(args.plane, args.graph, args.query, plan)
    started = time.perf_counter()
    features = build_features(tables, rows, plan)
    feature_seconds = time.perf_counter() - started
    result = fit_and_score(features, rows, task_type, seed=args.seed, threads=args.threads)
    metric = tune_metric(task_type)
    report = {
        "graph": args.graph,
        "query": args.query,
        "task_type": task_type,
        "rows": dict(rows.group_by("split").len().sort("split").iter_rows()),
        "features": result["feature_count"],
        "feature_seconds": round(feature_seconds, 2),
        "fit_seconds": round(result["fit_seconds"], 2),
        "refit_seconds": round(result["refit_seconds"], 2),
        "rounds": result["rounds"],
        f"val_{metric}": compute_metrics(task_type, *split_arrays(rows, result, "val"))[metric],
        "top_features": [name for name, _ in result["top_features"][:10]],
    }
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
