"""Standalone temporal neighbour sampling: build a graph from edge arrays in memory, sample it with fanouts
and a strategy per call, save it as a memory-mappable version and open it again (docs/graph_store.md).

Imports numpy, numba and our store modules only: no polars, pydantic or dagster.
"""

from __future__ import annotations

from stores.graph_build import build_graph
from stores.graph_core import EdgeType, GraphStoreError, StoredGraph, open_graph_store
from stores.sampler import SampledSubgraph, SamplerConfig, TemporalSampler, default_threads

__all__ = [
    "EdgeType",
    "GraphStoreError",
    "SampledSubgraph",
    "SamplerConfig",
    "StoredGraph",
    "TemporalSampler",
    "build_graph",
    "default_threads",
    "open_graph_store",
]
