"""The graph store: CSC adjacency per edge type, time-sorted neighbourhoods, opened with mmap.

One version is a directory named by its content hash:
    manifest.json          node types (count, has time, offset), edge types (counts, offsets), dtypes, stats
    nodes/time.npy         int64 seconds per node, temporal node types one after another
    nodes/<type>.keys.parquet  primary-key values in node-id order (the key -> node id map)
    nodes/<type>.order.npy, nodes/<type>.rank.npy  only for a node type whose caller ids were not in time
                           order (a graph built with `build_graph`): store id -> caller id, and back
    edges/indptr.npy       per edge type (src, rel, dst), n_dst + 1 offsets, one type after another
                           (int32 when edge counts fit, else int64)
    edges/indices.npy      per edge type, source ids (int32 when ids fit): each destination's
                           neighbourhood sorted by source time ascending; for an edge type where every
                           destination has at most one source, simply one id per destination (-1: none)
Edge types live in one pair of files so the sampler reads them through two arrays, with no per-type
indirection; every process that opens a version maps the same files, so the page cache holds one copy.

The arrays and their opening live in the polars-free `stores.graph_core` (re-exported here), the building
passes in `stores.graph_build`; this module adds the pipeline's build (with primary keys) and the resource.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from stores.graph_build import DirectedEdges, build_arrays, csc_into
from stores.graph_core import (
    FORMAT_VERSION,
    EdgeList,
    GraphStoreError,
    StoredGraph,
    open_graph_store,
    write_graph_version,
)
from stores.versions import building_version

__all__ = [
    "FORMAT_VERSION",
    "EdgeList",
    "GraphStoreError",
    "GraphStores",
    "StoredGraph",
    "build_graph_store",
    "csc_into",
    "open_graph_store",
]


def build_graph_store(
    root: str | Path,
    node_counts: Mapping[str, int],
    node_times: Mapping[str, np.ndarray],
    edges: list[EdgeList],
    extra: dict | None = None,
    node_keys: Mapping[str, pl.DataFrame] | None = None,
) -> tuple[Path, dict]:
    """Write a new version under ``root`` atomically and return (its directory, its manifest).

    Args:
        node_times: int64 seconds per node for temporal node types (node ids must be in time order).
        edges: one `EdgeList` per foreign key; both directions are stored.
        node_keys: per node type, the primary-key columns in node-id order (the key -> node id map).
    """
    started = time.perf_counter()
    directed = []
    for edge in edges:
        directed.append(DirectedEdges((edge.child, edge.name, edge.parent), edge.src, edge.dst, edge.dropped))
        directed.append(
            DirectedEdges((edge.parent, f"rev_{edge.name}", edge.child), edge.dst, edge.src, edge.dropped)
        )
    with building_version(root) as builder:
        staging = builder.staging
        (staging / "nodes").mkdir()
        (staging / "edges").mkdir()

        def allocate(name: str, dtype: np.dtype, length: int) -> np.ndarray:
            return np.lib.format.open_memmap(staging / name, "w+", dtype, (length,))

        graph = build_arrays(node_counts, node_times, directed, allocate, any_order=False)
        graph.manifest.pop("build_seconds")  # counted from `started`, keys included
        for node_type, keys in sorted((node_keys or {}).items()):
            keys_path = staging / "nodes" / f"{node_type}.keys.parquet"
            keys.write_parquet(keys_path)
            builder.hash_bytes(keys_path.name, keys_path.read_bytes())
            graph.manifest["node_types"][node_type]["keys"] = keys.columns
        return write_graph_version(builder, graph, extra, started, edges_in_place=True)


class GraphStores(BaseModel):
    """Graph-store versions under a local root (mmap needs a local file system, even when the data plane
    is on S3)."""

    model_config = ConfigDict(frozen=True)

    root: str

    def directory(self, graph: str) -> Path:
        return Path(self.root).expanduser() / graph / "graph_store"

    def open(self, graph: str, version: str | None = None) -> StoredGraph:
        return open_graph_store(self.directory(graph), version)

    def node_keys(self, stored: StoredGraph, node_type: str) -> pl.DataFrame:
        """The primary-key values of ``node_type`` in node-id order (row i is node i)."""
        return pl.read_parquet(stored.path / "nodes" / f"{node_type}.keys.parquet")
