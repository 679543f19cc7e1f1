"""The size of the data a trial trains on (node and edge counts, encoded feature bytes), read off the stores.

The trial estimate (`cluster.trial_estimate`) and the sampled-subgraph model (`cluster.subgraph_estimate`)
take their inputs from here, so the provisioner can size a trial without reading any data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DataStats", "EdgeStats"]


@dataclass(frozen=True)
class EdgeStats:
    """One edge type (src -> dst) as the sampler sees it: it draws sources among a destination's in-edges."""

    src: str
    rel: str
    dst: str
    edges: int
    mean_degree: float  # in-edges per destination node
    max_degree: float = math.inf


@dataclass(frozen=True)
class DataStats:
    """The size of the data a trial trains on: node counts, edge types, encoded feature bytes per node.

    Built from the opened stores by `from_stores`, or by hand in tests. ``seed_type`` is the entity the
    query predicts for (None: the worst node type is assumed). Store sizes default to what the counts imply.
    """

    node_counts: Mapping[str, int]
    edges: Sequence[EdgeStats]
    feature_bytes: Mapping[str, int]  # encoded feature bytes per node, per node type
    train_rows: int
    eval_rows: int = 0  # validation + test rows (scored after every epoch / at the end)
    seed_type: str | None = None
    graph_bytes: int | None = None
    feature_store_bytes: int | None = None
    input_widths: Mapping[str, int] = field(default_factory=dict)  # dense encoder inputs per node type
    vocab_sizes: Mapping[str, int] = field(default_factory=dict)  # category embedding rows per node type
    columns: Mapping[str, int] = field(default_factory=dict)  # numerical + categorical columns per node type

    @classmethod
    def from_stores(
        cls, graph: Any, features: Any, train_rows: int, eval_rows: int = 0, seed_type: str | None = None
    ) -> DataStats:
        """From an opened `StoredGraph` and `StoredFeatures` (their manifests; nothing is read)."""
        node_counts = dict(graph.node_counts)
        edges = []
        for meta in graph.manifest["edge_types"].values():
            src, rel, dst = meta["type"]
            degree = meta.get("degree", {})
            mean = degree.get("mean", meta["edges"] / max(node_counts.get(dst, 1), 1))
            edges.append(EdgeStats(src, rel, dst, int(meta["edges"]), float(mean),
                                   float(degree.get("max", math.inf))))  # fmt: skip
        feature_bytes, input_widths, vocab_sizes, columns = {}, {}, {}, {}
        for node_type, meta in features.schema["node_types"].items():
            blocks = meta.get("blocks", {})
            columns[node_type] = sum(1 for column in meta.get("columns", [])
                                     if column.get("block") in {"numerical", "categorical"})  # fmt: skip
            feature_bytes[node_type] = 4 * sum(blocks.values())  # float32 and int32 blocks
            input_widths[node_type] = blocks.get("numerical", 0) + blocks.get("text", 0)
            vocab_sizes[node_type] = sum(len(column.get("stats", {}).get("vocabulary", [])) + 2
                                         for column in meta.get("columns", [])
                                         if column.get("block") == "categorical")  # fmt: skip
        return cls(node_counts, tuple(edges), feature_bytes, int(train_rows), int(eval_rows), seed_type,
                   graph.manifest.get("bytes"), features.schema.get("bytes"), input_widths,
                   vocab_sizes, columns)  # fmt: skip

    @property
    def store_bytes(self) -> int:
        """Graph + feature store bytes: mapped by every trial, all touched over an epoch of random seeds."""
        graph = self.graph_bytes
        if graph is None:
            graph = sum(8 * count + 8 for count in self.node_counts.values())
            graph += sum(4 * edge.edges + 4 * self.node_counts.get(edge.dst, 0) for edge in self.edges)
        features = self.feature_store_bytes
        if features is None:
            features = sum(self.feature_bytes.get(t, 0) * count for t, count in self.node_counts.items())
        return int(graph + features)
