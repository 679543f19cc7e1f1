"""What the graph and feature stores are built from: a graph's validated tables as node and edge arrays
(node id = `_kumo_id`, two edge types per foreign key) and as node tables fitted on training-era rows."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl

from relational.keys import NODE_ID
from relational.pql.queries import load_queries, queries_beside
from relational.spec import GraphSpec
from relational.table_build import EVENT_TIME
from stores.feature_store import NodeTable
from stores.graph_store import EdgeList, build_graph_store

__all__ = ["build_graph_from_tables", "fit_cutoff", "node_tables"]


def build_graph_from_tables(
    spec: GraphSpec, tables: Mapping[str, pl.DataFrame], root: str | Path
) -> tuple[Path, dict]:
    """Nodes: one type per table (node id = `_kumo_id`); edges: two types per foreign key."""
    node_counts = {name: frame.height for name, frame in tables.items()}
    node_times = {
        name: frame.get_column(EVENT_TIME).to_numpy()
        for name, frame in tables.items()
        if EVENT_TIME in frame.columns
    }
    node_keys = {name: tables[name].select(spec.table(name).primary_key_columns) for name in tables
                 if spec.table(name).primary_key_columns}  # fmt: skip
    edges = []
    for child in spec.tables:
        frame = tables[child]
        for fk in spec.foreign_keys(child):
            linked = frame.select(NODE_ID, fk.id_column).drop_nulls()
            edges.append(
                EdgeList(
                    child, fk.name, fk.table,
                    linked.get_column(NODE_ID).to_numpy().astype(np.int64),
                    linked.get_column(fk.id_column).to_numpy().astype(np.int64),
                    dropped=frame.height - linked.height,
                )
            )  # fmt: skip
    return build_graph_store(root, node_counts, node_times, edges, {"graph": spec.graph_name}, node_keys)


def fit_cutoff(spec: GraphSpec) -> int | None:
    """The earliest validation anchor among the graph's queries (None when no query fixes one)."""
    queries_file = queries_beside(spec.path)
    if queries_file is None:
        return None
    cutoffs = []
    for query in load_queries(queries_file).values():
        plan = query.anchors
        if plan.val is not None:
            cutoffs.append(plan.val)
        elif plan.timestamps and plan.timestamps.get("val"):
            cutoffs.append(min(plan.timestamps["val"]))
    return min(cutoffs) if cutoffs else None


def node_tables(
    tables: dict[str, pl.DataFrame], metas: dict[str, dict], cutoff: int | None
) -> dict[str, NodeTable]:
    result = {}
    for name, frame in tables.items():
        fit_rows = None
        if cutoff is not None and EVENT_TIME in frame.columns:
            fit_rows = (frame.get_column(EVENT_TIME) <= cutoff).to_numpy()
        result[name] = NodeTable(frame, metas[name]["stypes"], fit_rows)
    return result
