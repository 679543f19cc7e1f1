"""The graph store: CSC adjacency per edge type, time-sorted neighbourhoods, opened with mmap.

One version is a directory named by its content hash:
    manifest.json          node types (count, has time, offset), edge types (counts, offsets), dtypes, stats
    nodes/time.npy         int64 seconds per node, temporal node types one after another
    nodes/<type>.keys.parquet  primary-key values in node-id order (the key -> node id map)
    edges/indptr.npy       per edge type (src, rel, dst), n_dst + 1 offsets, one type after another
                           (int32 when edge counts fit, else int64)
    edges/indices.npy      per edge type, source ids (int32 when ids fit): each destination's
                           neighbourhood sorted by source time ascending; for an edge type where every
                           destination has at most one source, simply one id per destination (-1: none)
Edge types live in one pair of files so the sampler reads them through two arrays, with no per-type
indirection; every process that opens a version maps the same files, so the page cache holds one copy.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

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
    "GraphStoreError",
    "GraphStores",
    "StoredGraph",
    "build_graph_store",
    "csc_into",
    "open_graph_store",
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


def csc_into(src: np.ndarray, dst: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> None:
    """Fill ``indptr``/``indices`` with the CSC over the destination by a stable counting sort.

    Each neighbourhood keeps source-id order, and node ids follow time order (ingest sorts rows by time),
    so neighbourhoods come out sorted by source time.
    """
    _counting_csc(src, dst, indptr, indices)
    if int(np.diff(indptr).max(initial=0)) > 1 and len(src) > 1 and np.any(src[1:] < src[:-1]):
        order = np.argsort(src, kind="stable")  # order matters only where a destination has 2+ sources
        _counting_csc(src[order], dst[order], indptr, indices)


@numba.njit(cache=True, nogil=True)
def _counting_csc(src, dst, indptr, indices):
    indptr[:] = 0
    for target in dst:
        indptr[target + 1] += 1
    for position in range(1, indptr.shape[0]):
        indptr[position] += indptr[position - 1]
    cursor = indptr[:-1].copy()
    for i in range(src.shape[0]):
        target = dst[i]
        indices[cursor[target]] = src[i]
        cursor[target] += 1


def _edge_key(edge_type: EdgeType) -> str:
    return "__".join(edge_type)


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
    with building_version(root) as builder:
        staging = builder.staging
        (staging / "nodes").mkdir()
        (staging / "edges").mkdir()
        node_meta = _write_nodes(builder, node_counts, node_times, node_keys or {})
        edge_meta, edge_dtypes = _write_edges(builder, node_counts, edges)
        total_edges = sum(meta["edges"] for meta in edge_meta.values())
        total_bytes = sum(path.stat().st_size for path in staging.rglob("*") if path.is_file())
        edge_bytes = sum(path.stat().st_size for path in (staging / "edges").glob("*.npy"))
        manifest = {
            "format_version": FORMAT_VERSION,
            "node_types": node_meta,
            "edge_types": edge_meta,
            **edge_dtypes,
            "edges": total_edges,
            "bytes": total_bytes,
            "edge_bytes": edge_bytes,
            "bytes_per_edge": edge_bytes / max(total_edges, 1),  # adjacency only; node times are per node
            "build_seconds": time.perf_counter() - started,
            **(extra or {}),
        }
        return publish(builder, manifest)


def _write_nodes(builder: VersionBuilder, node_counts, node_times, node_keys) -> dict:
    node_meta, offset, temporal = {}, 0, []
    for node_type in sorted(node_counts):
        count = int(node_counts[node_type])
        meta = {"count": count, "time": node_type in node_times, "time_offset": offset}
        if node_type in node_times:
            times = np.ascontiguousarray(node_times[node_type], dtype=np.int64)
            if len(times) != count:
                raise GraphStoreError(f"node type {node_type!r}: {len(times)} times for {count} nodes")
            if len(times) > 1 and np.any(times[1:] < times[:-1]):
                raise GraphStoreError(f"node type {node_type!r}: node ids must follow time order")
            temporal.append(times)
            offset += count
        if node_type in node_keys:
            keys_path = builder.staging / "nodes" / f"{node_type}.keys.parquet"
            node_keys[node_type].write_parquet(keys_path)
            builder.hash_bytes(keys_path.name, keys_path.read_bytes())
            meta["keys"] = node_keys[node_type].columns
        node_meta[node_type] = meta
    save_array(builder, "nodes/time.npy", np.concatenate(temporal) if temporal else np.zeros(0, np.int64))
    return node_meta


def _write_edges(builder: VersionBuilder, node_counts, edges: list[EdgeList]) -> tuple[dict, dict]:
    """Fill the two adjacency files in place (memory-mapped), one edge type after another.

    An edge type where every destination has at most one source (the reverse of a foreign key) is stored
    as ``single``: one source id per destination, -1 when none, and no offsets (half the memory reads).
    """
    int32_max = np.iinfo(np.int32).max
    index_dtype = np.int32 if max(node_counts.values(), default=0) < int32_max else np.int64
    indptr_dtype = np.int32 if max((len(e.src) for e in edges), default=0) <= int32_max else np.int64
    plan = []
    for edge in edges:
        for edge_type, src, dst in (
            ((edge.child, edge.name, edge.parent), edge.src, edge.dst),
            ((edge.parent, f"rev_{edge.name}", edge.child), edge.dst, edge.src),
        ):
            src, dst = np.asarray(src, np.int64), np.asarray(dst, np.int64)
            degrees = np.bincount(dst, minlength=node_counts[edge_type[2]])
            single = int(degrees.max(initial=0)) <= 1
            plan.append((edge_type, src, dst, degrees, single, edge.dropped))
    indptr_length = sum(len(degrees) + 1 for *_, degrees, single, _ in plan if not single)
    indices_length = sum(len(degrees) if single else len(src) for _, src, _, degrees, single, _ in plan)
    staging = builder.staging
    indptr_all = np.lib.format.open_memmap(
        staging / "edges" / "indptr.npy", "w+", indptr_dtype, (indptr_length,)
    )
    indices_all = np.lib.format.open_memmap(
        staging / "edges" / "indices.npy", "w+", index_dtype, (indices_length,)
    )
    edge_meta, indptr_at, indices_at = {}, 0, 0
    for edge_type, src, dst, degrees, single, dropped in plan:
        num_dst = len(degrees)
        if single:
            indices = indices_all[indices_at : indices_at + num_dst]
            indices[:] = -1
            indices[dst] = src
            indptr_offset, indices_at = -1, indices_at + num_dst
        else:
            indptr = indptr_all[indptr_at : indptr_at + num_dst + 1]
            csc_into(src, dst, indptr, indices_all[indices_at : indices_at + len(src)])
            indptr_offset, indptr_at = indptr_at, indptr_at + num_dst + 1
            indices_at += len(src)
        edge_meta[_edge_key(edge_type)] = {
            "type": list(edge_type),
            "layout": "single" if single else "csc",
            "edges": len(src),
            "indptr_offset": indptr_offset,
            "indices_offset": indices_at - (num_dst if single else len(src)),
            "dropped_rows": int(dropped),
            "degree": {
                "mean": float(degrees.mean()) if num_dst else 0.0,
                "max": int(degrees.max(initial=0)),
                "p99": float(np.percentile(degrees, 99)) if num_dst else 0.0,
            },
        }
    indptr_all.flush()
    indices_all.flush()
    for name, array in (("indptr", indptr_all), ("indices", indices_all)):
        builder.hash_bytes(name, np.ascontiguousarray(array).view(np.uint8).data)
    del indptr_all, indices_all
    return edge_meta, {
        "index_dtype": np.dtype(index_dtype).name,
        "indptr_dtype": np.dtype(indptr_dtype).name,
        "indptr_length": indptr_length,
        "indices_length": indices_length,
    }


@dataclass
class StoredGraph:
    """An opened version: read-only memory-mapped arrays shared by every process on the machine.

    ``indptr``/``indices``/``times`` are the whole files; ``csc`` and ``node_times`` are views per type.
    """

    path: Path
    manifest: dict
    indptr: np.ndarray
    indices: np.ndarray
    times: np.ndarray
    node_times: dict[str, np.ndarray] = field(default_factory=dict)
    csc: Mapping = field(default_factory=dict)  # edge type -> (indptr, indices), see _CscViews

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def node_counts(self) -> dict[str, int]:
        return {name: meta["count"] for name, meta in self.manifest["node_types"].items()}

    @property
    def edge_types(self) -> list[EdgeType]:
        return [tuple(meta["type"]) for meta in self.manifest["edge_types"].values()]


def open_graph_store(root: str | Path, version: str | None = None) -> StoredGraph:
    """Map a version (default: the latest written) and check every file against the manifest."""
    path = resolve_version(root, version, "graph store", GraphStoreError)
    manifest = read_manifest(path, "manifest.json", FORMAT_VERSION, GraphStoreError)
    node_types = manifest["node_types"]
    times_size = sum(meta["count"] for meta in node_types.values() if meta["time"])
    graph = StoredGraph(
        path,
        manifest,
        indptr=_map(path / "edges" / "indptr.npy", (manifest["indptr_length"],), manifest["indptr_dtype"]),
        indices=_map(path / "edges" / "indices.npy", (manifest["indices_length"],), manifest["index_dtype"]),
        times=_map(path / "nodes" / "time.npy", (times_size,), "int64"),
    )
    for node_type, meta in node_types.items():
        if meta["time"]:
            graph.node_times[node_type] = graph.times[
                meta["time_offset"] : meta["time_offset"] + meta["count"]
            ]
    for key, meta in manifest["edge_types"].items():
        if meta["layout"] == "csc":
            num_dst = node_types[meta["type"][2]]["count"]
            end = int(graph.indptr[meta["indptr_offset"] + num_dst])
            if end != meta["edges"]:
                raise GraphStoreError(f"{path}: {key} offsets end at {end}, expected {meta['edges']} edges")
    graph.csc = _CscViews(graph)
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
