"""Building a graph store's arrays from edge arrays: in memory (`build_graph`), or straight into the files
of a version being written (`stores.graph_store.build_graph_store` passes an allocator of memory maps).

Layout (see `stores.graph_store`): per edge type, CSC over the destination, each neighbourhood sorted by
source store id, i.e. by source time; an edge type where every destination has at most one source is
``single`` (one source id per destination, -1 for none). Two compiled passes per edge type fill the
output arrays directly: no sorted copy of the edge arrays, no per-edge temporaries. Caller ids of a node
type whose times are not in order are mapped to store ids inside those passes (see `stores.graph_core`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numba
import numpy as np

from stores.graph_core import FORMAT_VERSION, EdgeType, GraphStoreError, StoredGraph, assemble_graph

__all__ = ["Allocate", "DirectedEdges", "build_arrays", "build_graph", "csc_into"]

Allocate = Callable[[str, np.dtype, int], np.ndarray]  # (relative file name, dtype, length) -> array
_NO_RANK = np.zeros(0, np.int64)


@dataclass(frozen=True)
class DirectedEdges:
    """One stored edge type: messages flow from ``src[i]`` (of ``edge_type[0]``) to ``dst[i]``."""

    edge_type: EdgeType
    src: np.ndarray
    dst: np.ndarray
    dropped: int = 0  # rows left out upstream (null or dangling keys), for the manifest


def build_graph(
    node_counts: Mapping[str, int],
    edges: Mapping[EdgeType, tuple[np.ndarray, np.ndarray]],
    node_times: Mapping[str, np.ndarray] | None = None,
    add_reverse: bool = False,
) -> StoredGraph:
    """A graph store in memory from ``{(src type, relation, dst type): (src ids, dst ids)}``.

    Ids are the caller's, 0..count-1 per node type, in any order; ``node_times`` gives int64 seconds per
    node of the temporal node types. ``add_reverse`` also stores ``(dst type, "rev_" + relation, src type)``
    for every edge type. Nothing is written to disk until `StoredGraph.save`.
    """
    directed = [DirectedEdges(tuple(edge_type), src, dst) for edge_type, (src, dst) in edges.items()]
    if add_reverse:
        directed += [
            DirectedEdges((d.edge_type[2], f"rev_{d.edge_type[1]}", d.edge_type[0]), d.dst, d.src)
            for d in directed
        ]
    return build_arrays(node_counts, node_times or {}, directed, _allocate_in_memory, any_order=True)


def _allocate_in_memory(_name: str, dtype: np.dtype, length: int) -> np.ndarray:
    return np.empty(length, dtype)


def build_arrays(
    node_counts: Mapping[str, int],
    node_times: Mapping[str, np.ndarray],
    edges: list[DirectedEdges],
    allocate: Allocate,
    any_order: bool,
) -> StoredGraph:
    """The store's arrays (edge arrays from ``allocate``) and manifest, as an unsaved `StoredGraph`.

    ``any_order``: accept temporal node ids out of time order (kept as a permutation); else refuse them.
    """
    started = time.perf_counter()
    unknown = sorted(set(node_times) - set(node_counts))
    if unknown:
        raise ValueError(f"times given for unknown node types {unknown}")
    int32_max = np.iinfo(np.int32).max
    index_dtype = np.dtype(np.int32 if max(node_counts.values(), default=0) < int32_max else np.int64)
    indptr_dtype = np.dtype(
        np.int32 if max((len(e.src) for e in edges), default=0) <= int32_max else np.int64
    )
    node_meta, times, order, rank = _nodes(node_counts, node_times, index_dtype, any_order)
    for edge in edges:
        missing = [name for name in edge.edge_type[::2] if name not in node_counts]
        if len(edge.edge_type) != 3 or missing:
            raise ValueError(
                f"edge type {edge.edge_type}: not (source, relation, destination) of known types"
            )
    scratch = np.empty(max((node_counts[e.edge_type[2]] for e in edges), default=0), indptr_dtype)
    plan = [_plan_edges(edge, node_counts, rank, scratch) for edge in edges]
    del scratch
    keys = ["__".join(entry[0]) for entry in plan]
    if len(set(keys)) != len(keys):
        raise ValueError(f"edge types must be distinct (joined by '__'): {sorted(keys)}")
    indptr_length = sum(node_counts[entry[0][2]] + 1 for entry in plan if not entry[4])
    indices_length = sum(node_counts[entry[0][2]] if entry[4] else len(entry[1]) for entry in plan)
    indptr_all = allocate("edges/indptr.npy", indptr_dtype, indptr_length)
    indices_all = allocate("edges/indices.npy", index_dtype, indices_length)
    edge_meta, indptr_at, indices_at = {}, 0, 0
    for (edge_type, src, dst, (src_rank, dst_rank), single, meta), key in zip(plan, keys, strict=True):
        num_dst = int(node_counts[edge_type[2]])
        if single:
            _fill_single(src, dst, src_rank, dst_rank, indices_all[indices_at : indices_at + num_dst])
            meta.update(layout="single", indptr_offset=-1, indices_offset=indices_at)
            indices_at += num_dst
        else:
            indptr = indptr_all[indptr_at : indptr_at + num_dst + 1]
            _fill_csc(src, dst, src_rank, dst_rank, indptr, indices_all[indices_at : indices_at + len(src)])
            meta.update(layout="csc", indptr_offset=indptr_at, indices_offset=indices_at)
            indptr_at, indices_at = indptr_at + num_dst + 1, indices_at + len(src)
        edge_meta[key] = {"type": list(edge_type), **meta}
    manifest = {
        "format_version": FORMAT_VERSION,
        "node_types": node_meta,
        "edge_types": edge_meta,
        "index_dtype": index_dtype.name,
        "indptr_dtype": indptr_dtype.name,
        "indptr_length": indptr_length,
        "indices_length": indices_length,
        "edges": sum(meta["edges"] for meta in edge_meta.values()),
        "build_seconds": time.perf_counter() - started,
    }
    return assemble_graph(None, manifest, indptr_all, indices_all, times, order, rank)


def _nodes(node_counts, node_times, index_dtype, any_order) -> tuple[dict, np.ndarray, dict, dict]:
    """Node metadata, every temporal type's times in store order (one array, the store's own copy: the
    caller's arrays may change or go after the build), and the permutations."""
    for node_type, times in node_times.items():
        if np.shape(times) != (int(node_counts[node_type]),):
            raise GraphStoreError(
                f"node type {node_type!r}: {len(times)} times for {node_counts[node_type]} nodes"
            )
    all_times = np.empty(sum(int(node_counts[node_type]) for node_type in node_times), np.int64)
    node_meta, offset, order, rank = {}, 0, {}, {}
    for node_type in sorted(node_counts):
        count = int(node_counts[node_type])
        if count < 0:
            raise ValueError(f"node type {node_type!r}: negative count {count}")
        meta = {"count": count, "time": node_type in node_times, "time_offset": offset}
        if node_type in node_times:
            times = np.asarray(node_times[node_type], dtype=np.int64)
            if not _is_sorted(times):
                if not any_order:
                    raise GraphStoreError(f"node type {node_type!r}: node ids must follow time order")
                permutation = np.argsort(times, kind="stable")  # ties: the smaller caller id first
                np.take(times, permutation, out=all_times[offset : offset + count])
                order[node_type] = permutation.astype(index_dtype, copy=False)
                del permutation
                rank[node_type] = np.empty(count, index_dtype)
                _invert(order[node_type], rank[node_type])
                meta["order"] = True
            else:
                all_times[offset : offset + count] = times
            offset += count
        node_meta[node_type] = meta
    return node_meta, all_times, order, rank


def _plan_edges(edge: DirectedEdges, node_counts, rank, scratch: np.ndarray) -> tuple:
    """Check one edge type's ids; its layout and degree statistics from one counting pass."""
    edge_type = tuple(edge.edge_type)
    src, dst = _ids(edge.src, edge_type, "source"), _ids(edge.dst, edge_type, "destination")
    if len(src) != len(dst):
        raise ValueError(f"edge type {edge_type}: {len(src)} source ids for {len(dst)} destination ids")
    for ids, node_type, end in ((src, edge_type[0], "source"), (dst, edge_type[2], "destination")):
        count = int(node_counts[node_type])
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= count):
            raise ValueError(f"edge type {edge_type}: {end} ids must lie in [0, {count}) ({node_type!r})")
    degrees = scratch[: int(node_counts[edge_type[2]])]  # one buffer for every edge type: fewer page faults
    _count(dst, degrees)
    meta = {"edges": len(src), "dropped_rows": int(edge.dropped), "degree": _degree_stats(degrees)}
    ranks = (rank.get(edge_type[0], _NO_RANK), rank.get(edge_type[2], _NO_RANK))
    return edge_type, src, dst, ranks, meta["degree"]["max"] <= 1, meta


def _ids(ids, edge_type: EdgeType, end: str) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise ValueError(
            f"edge type {edge_type}: {end} ids must be a 1-d integer array, got {ids.dtype}{ids.shape}"
        )
    return ids.astype(np.int64) if ids.dtype == np.uint64 else ids


def _degree_stats(degrees: np.ndarray) -> dict:
    """Mean, max and 99th percentile (numpy's linear rule) of the in-degrees, from their histogram."""
    if not len(degrees):
        return {"mean": 0.0, "max": 0, "p99": 0.0}
    histogram = np.bincount(degrees)
    position = (len(degrees) - 1) * 0.99
    below = int(np.floor(position))
    cumulative = np.cumsum(histogram)
    low, high = np.searchsorted(cumulative, [below + 1, min(below + 2, len(degrees))])
    fraction = position - below
    p99 = low + (high - low) * fraction if fraction < 0.5 else high - (high - low) * (1 - fraction)
    return {"mean": float(degrees.mean()), "max": len(histogram) - 1, "p99": float(p99)}


def csc_into(src: np.ndarray, dst: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> None:
    """Fill ``indptr``/``indices`` with the CSC over the destination, each neighbourhood by ascending source
    id (node ids follow time order, so by source time)."""
    _fill_csc(src, dst, _NO_RANK, _NO_RANK, indptr, indices)


@numba.njit(cache=True, nogil=True)
def _is_sorted(values):
    for i in range(1, values.shape[0]):  # noqa: SIM110 (numba compiles no generator into all())
        if values[i] < values[i - 1]:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _invert(permutation, inverse):
    for i in range(permutation.shape[0]):
        inverse[permutation[i]] = i


@numba.njit(cache=True, nogil=True)
def _count(ids, counts):
    counts[:] = 0
    for i in range(ids.shape[0]):
        counts[ids[i]] += 1


@numba.njit(cache=True, nogil=True)
def _fill_csc(src, dst, src_rank, dst_rank, indptr, indices):
    """Counting sort by store destination id; neighbourhoods that come out unsorted are sorted in place."""
    num_dst = indptr.shape[0] - 1
    indptr[:] = 0
    for i in range(dst.shape[0]):
        target = dst_rank[dst[i]] if dst_rank.shape[0] else dst[i]
        indptr[target + 1] += 1
    for position in range(1, num_dst + 1):
        indptr[position] += indptr[position - 1]
    cursor = np.empty(num_dst, np.int64)
    for target in range(num_dst):
        cursor[target] = indptr[target]
    in_order = True
    for i in range(src.shape[0]):
        target = dst_rank[dst[i]] if dst_rank.shape[0] else dst[i]
        source = src_rank[src[i]] if src_rank.shape[0] else src[i]
        position = cursor[target]
        if position > indptr[target] and indices[position - 1] > source:
            in_order = False
        indices[position] = source
        cursor[target] = position + 1
    if not in_order:
        for target in range(num_dst):
            if indptr[target + 1] - indptr[target] > 1:
                indices[indptr[target] : indptr[target + 1]].sort()


@numba.njit(cache=True, nogil=True)
def _fill_single(src, dst, src_rank, dst_rank, indices):
    """One source per destination (-1: none)."""
    indices[:] = -1
    for i in range(src.shape[0]):
        target = dst_rank[dst[i]] if dst_rank.shape[0] else dst[i]
        indices[target] = src_rank[src[i]] if src_rank.shape[0] else src[i]
