"""Shared setup of the F1 benchmarks: ingest the embedded F1 database, build its stores and training tables.

The stores are built once into a scratch folder (reused across runs when ``KUMO_BENCH_CACHE`` names one).
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relational.graph_tables import ingest_in_memory  # noqa: E402
from relational.pql.queries import load_queries  # noqa: E402
from relational.pql.training_table import build_training_table  # noqa: E402
from relational.schema import GraphSchema  # noqa: E402
from relational.spec_loader import load_spec  # noqa: E402
from stores.feature_store import StoredFeatures, build_feature_store, open_feature_store  # noqa: E402
from stores.graph_store import StoredGraph, open_graph_store  # noqa: E402
from stores.store_inputs import (  # noqa: E402
    build_graph_from_tables,
    fit_cutoff,
    node_tables,
)

F1_SPEC = ROOT / "kumo_assets" / "examples" / "f1" / "graph.yaml"
TEST_TIMESTAMP = 1262304000  # 2010-01-01: RelBench's frozen regime hides every row after it


@dataclass
class F1Setup:
    frames: dict[str, pl.DataFrame]
    schema: GraphSchema
    graph: StoredGraph
    features: StoredFeatures
    tables: dict[str, pl.DataFrame]  # query name -> training table
    task_types: dict[str, str]
    scratch: Path


def f1_setup(queries: list[str] | None = None) -> F1Setup:
    spec = load_spec(F1_SPEC)
    built = ingest_in_memory(spec)
    frames = {name: table.frame for name, table in built.items()}
    metas = {name: table.meta for name, table in built.items()}
    schema = GraphSchema.from_built_tables(spec, built)
    scratch = Path(os.environ.get("KUMO_BENCH_CACHE") or tempfile.mkdtemp(prefix="kumo-f1-"))
    if not (scratch / "graph").exists():
        build_graph_from_tables(spec, frames, scratch / "graph")
    if not (scratch / "features").exists():
        build_feature_store(scratch / "features", node_tables(frames, metas, fit_cutoff(spec)))
    tables, task_types = {}, {}
    for name, query in load_queries(spec.path.parent / "queries.yaml").items():
        if queries and name not in queries:
            continue
        result = build_training_table(query.text, schema, frames, query.anchors)
        tables[name], task_types[name] = result.table, result.meta["task_type"]
    graph, features = open_graph_store(scratch / "graph"), open_feature_store(scratch / "features")
    return F1Setup(frames, schema, graph, features, tables, task_types, scratch)


def driver_keys(setup: F1Setup) -> pl.DataFrame:
    """driverId in node-id order (row i is node i of ``drivers``)."""
    return setup.frames["drivers"].sort("_kumo_id").select("driverId")
