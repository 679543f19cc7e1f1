"""A graph store as arrays: `StoredGraph` (in memory, or memory-mapped from a version directory), opening a
version and writing one. Imports numpy and our version helpers only: no polars, pydantic or dagster, so the
standalone sampler (`stores.temporal`) stays light. `stores.graph_store` re-exports everything here.

Node ids inside a store follow time order for every temporal node type (the sampler's binary searches need
each neighbourhood sorted by source time). A store built from ids in another order (`stores.graph_build`)
keeps, per such node type, ``order`` (store id -> caller id) and ``rank`` (caller id -> store id); the
sampler translates through them. A pipeline store has none, and pays nothing.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stores.versions import (
    VersionBuilder,
    building_version,
    publish,
    read_manifest,
    resolve_version,
    save_array,
)

__all__ = [
    "FORMAT_VERSION",
    "EdgeList",
    "EdgeType",
    "GraphStoreError",
    "StoredGraph",
    "assemble_graph",
    "open_graph_store",
    "write_graph_version",
]

FORMAT_VERSION = 1
EdgeType = tuple[str, str, str]


class GraphStoreError(Exception):
    """A graph store cannot be opened as asked: missing, truncated, or another version than expected."""


@dataclass(frozen=True)
class EdgeList:
    """One foreign key as edges: child node ``src[i]`` points at parent node ``dst[i]``."""

    child: str
    name: str
    parent: str
    src: np.ndarray
    dst: np.ndarray
    dropped: int = 0  # rows whose key was null or dangling


@dataclass
class StoredGraph:
    """A graph store's arrays: read-only memory maps of a version, or in-memory arrays not yet saved.

    ``indptr``/``indices``/``times`` hold every type; ``csc`` and ``node_times`` are views per type, all in
    store ids (time order). ``order``/``rank`` translate store ids to caller ids and back, for the node
    types whose caller ids were not in time order (empty for pipeline stores).
    """

    path: Path | None
    manifest: dict
    indptr: np.ndarray
    indices: np.ndarray
    times: np.ndarray
    node_times: dict[str, np.ndarray] = field(default_factory=dict)
    csc: Mapping = field(default_factory=dict)  # edge type -> (indptr, indices), see _CscViews
    order: dict[str, np.ndarray] = field(default_factory=dict)  # store id -> caller id
    rank: dict[str, np.ndarray] = field(default_factory=dict)  # caller id -> store id

    @property
    def version(self) -> str:
        """The content hash naming the version (a graph built in memory has none until saved)."""
        if "version" not in self.manifest:
            raise GraphStoreError("a graph built in memory has no version: save() it and open the saved one")
        return self.manifest["version"]

    @property
    def node_counts(self) -> dict[str, int]:
        """Nodes per node type."""
        return {name: meta["count"] for name, meta in self.manifest["node_types"].items()}

    @property
    def edge_types(self) -> list[EdgeType]:
        """Every stored edge type, (source type, relation, destination type)."""
        return [tuple(meta["type"]) for meta in self.manifest["edge_types"].values()]

    def to_store_ids(self, node_type: str, ids: np.ndarray) -> np.ndarray:
        """Caller ids of ``node_type`` as store ids (the same ids when the type needs no translation)."""
        rank = self.rank.get(node_type)
        ids = np.asarray(ids, dtype=np.int64)
        return ids if rank is None else rank[ids].astype(np.int64)

    def to_caller_ids(self, node_type: str, ids: np.ndarray) -> np.ndarray:
        """Store ids of ``node_type`` as caller ids (the same ids when the type needs no translation)."""
        order = self.order.get(node_type)
        ids = np.asarray(ids, dtype=np.int64)
        return ids if order is None else order[ids].astype(np.int64)

    def times_of(self, node_type: str, ids: np.ndarray) -> np.ndarray:
        """Seconds of the nodes with caller ids ``ids`` (a temporal node type)."""
        return np.asarray(self.node_times[node_type])[self.to_store_ids(node_type, ids)]

    def save(self, root: str | Path, extra: dict | None = None) -> Path:
        """Write this graph as a new version under ``root`` (atomically) and return its directory.

        The arrays only: a pipeline store's primary-key files are not copied.
        """
        started = time.perf_counter()
        with building_version(root) as builder:
            path, _ = write_graph_version(builder, self, extra, started)
        return path


def assemble_graph(
    path: Path | None,
    manifest: dict,
    indptr: np.ndarray,
    indices: np.ndarray,
    times: np.ndarray,
    order: dict[str, np.ndarray] | None = None,
    rank: dict[str, np.ndarray] | None = None,
) -> StoredGraph:
    """A `StoredGraph` over whole arrays laid out as ``manifest`` says, with its per-type views."""
    graph = StoredGraph(path, manifest, indptr, indices, times, order=order or {}, rank=rank or {})
    for node_type, meta in manifest["node_types"].items():
        if meta["time"]:
            graph.node_times[node_type] = times[meta["time_offset"] : meta["time_offset"] + meta["count"]]
    graph.csc = _CscViews(graph)
    return graph


def write_graph_version(
    builder: VersionBuilder,
    graph: StoredGraph,
    extra: dict | None,
    started: float,
    edges_in_place: bool = False,
) -> tuple[Path, dict]:
    """Save ``graph``'s arrays into the staging directory (``edges_in_place``: the edge arrays are already
    memory maps of its files) and publish the version; returns (its directory, its manifest)."""
    staging = builder.staging
    save_array(builder, "nodes/time.npy", graph.times)
    for node_type in sorted(graph.order):
        save_array(builder, f"nodes/{node_type}.order.npy", graph.order[node_type])
        save_array(builder, f"nodes/{node_type}.rank.npy", graph.rank[node_type])
    (staging / "edges").mkdir(exist_ok=True)
    for name, array in (("indptr", graph.indptr), ("indices", graph.indices)):
        if edges_in_place:
            array.flush()
        else:
            np.save(staging / "edges" / f"{name}.npy", array, allow_pickle=False)
        builder.hash_bytes(name, np.ascontiguousarray(array).view(np.uint8).data)
    manifest = {key: value for key, value in graph.manifest.items() if key != "version"}
    total_edges = manifest["edges"]
    edge_bytes = sum(path.stat().st_size for path in (staging / "edges").glob("*.npy"))
    manifest.update(
        bytes=sum(path.stat().st_size for path in staging.rglob("*") if path.is_file()),
        edge_bytes=edge_bytes,
        bytes_per_edge=edge_bytes / max(total_edges, 1),  # adjacency only; node times are per node
        build_seconds=manifest.get("build_seconds", 0.0) + time.perf_counter() - started,
        **(extra or {}),
    )
    return publish(builder, manifest)


def open_graph_store(root: str | Path, version: str | None = None) -> StoredGraph:
    """Map a version (default: the latest written) and check every file against the manifest."""
    path = resolve_version(root, version, "graph store", GraphStoreError)
    manifest = read_manifest(path, "manifest.json", FORMAT_VERSION, GraphStoreError)
    node_types = manifest["node_types"]
    times_size = sum(meta["count"] for meta in node_types.values() if meta["time"])
    order, rank = {}, {}
    for node_type, meta in node_types.items():
        if meta.get("order"):
            shape, dtype = (meta["count"],), manifest["index_dtype"]
            order[node_type] = _map(path / "nodes" / f"{node_type}.order.npy", shape, dtype)
            rank[node_type] = _map(path / "nodes" / f"{node_type}.rank.npy", shape, dtype)
    graph = assemble_graph(
        path,
        manifest,
        indptr=_map(path / "edges" / "indptr.npy", (manifest["indptr_length"],), manifest["indptr_dtype"]),
        indices=_map(path / "edges" / "indices.npy", (manifest["indices_length"],), manifest["index_dtype"]),
        times=_map(path / "nodes" / "time.npy", (times_size,), "int64"),
        order=order,
        rank=rank,
    )
    for key, meta in manifest["edge_types"].items():
        if meta["layout"] == "csc":
            num_dst = node_types[meta["type"][2]]["count"]
            end = int(graph.indptr[meta["indptr_offset"] + num_dst])
            if end != meta["edges"]:
                raise GraphStoreError(f"{path}: {key} offsets end at {end}, expected {meta['edges']} edges")
    return graph


class _CscViews(Mapping):
    """(indptr, indices) per edge type: views for ``csc`` layouts, built on first use for ``single`` ones."""

    def __init__(self, graph: StoredGraph) -> None:
        self._graph = graph
        self._built: dict = {}

    def __getitem__(self, edge_type):
        edge_type = tuple(edge_type)
        if edge_type not in self._built:
            graph = self._graph
            meta = graph.manifest["edge_types"]["__".join(edge_type)]
            num_dst = graph.manifest["node_types"][edge_type[2]]["count"]
            start = meta["indices_offset"]
            if meta["layout"] == "csc":
                indptr = graph.indptr[meta["indptr_offset"] : meta["indptr_offset"] + num_dst + 1]
                indices = graph.indices[start : start + meta["edges"]]
            else:
                sources = np.asarray(graph.indices[start : start + num_dst])
                present = sources >= 0
                indptr = np.concatenate([[0], np.cumsum(present)]).astype(np.int64)
                indices = sources[present]
            self._built[edge_type] = (indptr, indices)
        return self._built[edge_type]

    def __iter__(self):
        return iter(tuple(meta["type"]) for meta in self._graph.manifest["edge_types"].values())

    def __len__(self) -> int:
        return len(self._graph.manifest["edge_types"])


def _map(path: Path, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise GraphStoreError(f"{path} is missing: the graph store is incomplete; rebuild it") from None
    except ValueError as exc:
        raise GraphStoreError(f"{path} is truncated or corrupt ({exc}); rebuild the graph store") from None
    if array.shape != shape or str(array.dtype) != dtype:
        raise GraphStoreError(
            f"{path} holds {array.dtype}{array.shape}, expected {dtype}{shape}; rebuild the graph store"
        )
    return array
