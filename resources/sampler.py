"""The temporal neighbour sampler: a pure function of (graph, seeds, seed times, fanouts, strategy, rng seed).

Semantics (those of pyg-lib's temporal sampler): subgraphs are disjoint per seed (a node reached from two
seeds appears twice; within one seed's subgraph it appears once), seeds come first, and a neighbour of a
temporal node type is visible iff its time <= the root seed's time (static node types are unfiltered).
Per hop and edge type: ``k`` neighbours, ``-1`` for all; strategy ``last`` takes the ``k`` most recent
visible ones, ``uniform`` draws ``k`` without replacement (Floyd's algorithm). An optional window per hop
keeps neighbours with time in [seed + a, seed + b] (b is capped at 0). Output per node type is in
(hop, seed) order, so ``num_sampled_nodes`` describes layers as PyG expects.

Seeds are split into one contiguous chunk per thread; each chunk runs in compiled numba code that releases
the GIL, so chunks run in parallel on Python threads. Every seed draws from its own counter-based random
stream, so results do not depend on the number of threads.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np

from resources.graph_store import StoredGraph

__all__ = ["SampledSubgraph", "SamplerConfig", "TemporalSampler"]

EdgeType = tuple[str, str, str]
_NO_WINDOW = np.iinfo(np.int64).min


@dataclass(frozen=True)
class SamplerConfig:
    """How to sample: fanouts per hop (one int for all edge types, or a dict per edge type)."""

    fanouts: tuple  # e.g. (15, 10) or ({edge_type: k, ...}, ...)
    strategy: str = "uniform"  # uniform | last
    windows: tuple | None = None  # per hop: (a, b) seconds relative to the seed time, or None

    def __post_init__(self) -> None:
        if self.strategy not in {"uniform", "last"}:
            raise ValueError(f"strategy must be 'uniform' or 'last', got {self.strategy!r}")
        if self.windows is not None and len(self.windows) != len(self.fanouts):
            raise ValueError(
                f"give one window per hop: {len(self.fanouts)} hops, {len(self.windows)} windows"
            )


@dataclass
class SampledSubgraph:
    """Per node type: global ids, seed index, count per hop; per edge type: local (row, col), count per hop."""

    node: dict[str, np.ndarray]
    batch: dict[str, np.ndarray]
    num_sampled_nodes: dict[str, list[int]]
    row: dict[EdgeType, np.ndarray]
    col: dict[EdgeType, np.ndarray]
    num_sampled_edges: dict[EdgeType, list[int]]


class TemporalSampler:
    """Samples from one opened graph-store version; cheap to construct, safe to share read-only."""

    def __init__(self, graph: StoredGraph, config: SamplerConfig, threads: int | None = None) -> None:
        self.graph = graph
        self.config = config
        self.threads = threads or os.cpu_count() or 1
        self._mark_rows: np.ndarray | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.node_types = sorted(graph.node_counts)
        self.edge_types = sorted(graph.edge_types)
        type_index = {name: i for i, name in enumerate(self.node_types)}
        self._src_type = np.array([type_index[e[0]] for e in self.edge_types], dtype=np.int64)
        self._dst_type = np.array([type_index[e[2]] for e in self.edge_types], dtype=np.int64)
        counts = np.array([graph.node_counts[t] for t in self.node_types], dtype=np.int64)
        self._type_offset = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._has_time = np.array([t in graph.node_times for t in self.node_types], dtype=np.bool_)
        empty = np.zeros(0, dtype=np.int64)
        self._times = tuple(_read_only(graph.node_times.get(t, empty)) for t in self.node_types)
        self._indptr = tuple(_read_only(graph.csc[e][0]) for e in self.edge_types)
        self._indices = tuple(_read_only(graph.csc[e][1]) for e in self.edge_types)
        self._fanouts = self._fanout_matrix(config.fanouts)
        self._windows = np.full((len(config.fanouts), 2), _NO_WINDOW, dtype=np.int64)
        for hop, window in enumerate(config.windows or ()):
            if window is not None:
                self._windows[hop] = (int(window[0]), min(int(window[1]), 0))

    def _fanout_matrix(self, fanouts: tuple) -> np.ndarray:
        matrix = np.zeros((len(fanouts), len(self.edge_types)), dtype=np.int64)
        for hop, fanout in enumerate(fanouts):
            if isinstance(fanout, dict):
                unknown = set(fanout) - set(self.edge_types)
                if unknown:
                    raise ValueError(f"hop {hop}: unknown edge types {sorted(unknown)}")
                matrix[hop] = [int(fanout.get(e, 0)) for e in self.edge_types]
            else:
                matrix[hop] = int(fanout)
        return matrix

    def sample(
        self, seed_type: str, seeds: np.ndarray, seed_times: np.ndarray | None = None, rng_seed: int = 0
    ) -> SampledSubgraph:
        """Sample the disjoint subgraphs of ``seeds`` (node ids of ``seed_type``) at ``seed_times``."""
        if seed_type not in self.node_types:
            raise ValueError(f"unknown node type {seed_type!r}; known: {self.node_types}")
        seeds = np.ascontiguousarray(seeds, dtype=np.int64)
        if len(seeds) and (seeds.min() < 0 or seeds.max() >= self.graph.node_counts[seed_type]):
            raise ValueError(
                f"seed ids must lie in [0, {self.graph.node_counts[seed_type]}) for {seed_type!r}"
            )
        if seed_times is None:
            seed_times = np.full(len(seeds), np.iinfo(np.int64).max, dtype=np.int64)
        seed_times = np.ascontiguousarray(seed_times, dtype=np.int64)
        if len(seed_times) != len(seeds):
            raise ValueError("give one seed time per seed")
        chunks = max(1, min(self.threads, len(seeds)))
        bounds = np.linspace(0, len(seeds), chunks + 1).astype(np.int64)
        marks = self._marks(chunks)
        arguments = (
            self.node_types.index(seed_type), seeds, seed_times, self._src_type, self._dst_type, self._type_offset,
            self._has_time, self._times, self._indptr, self._indices, self._fanouts, self._windows,
            self.config.strategy == "last", np.uint64(rng_seed & 0xFFFFFFFFFFFFFFFF),
        )  # fmt: skip

        def run(chunk: int):
            return _sample_one_chunk(
                *arguments[:3], bounds[chunk], bounds[chunk + 1], *arguments[3:], marks[chunk]
            )

        with self._lock:  # the scratch rows are shared: one sample call at a time per sampler
            parts = [run(0)] if chunks == 1 else list(self._pool(chunks).map(run, range(chunks)))
        return self._assemble(parts)

    def _marks(self, chunks: int) -> np.ndarray:
        """One zeroed scratch row per thread, allocated once (sampling leaves them zeroed again)."""
        if self._mark_rows is None or len(self._mark_rows) < chunks:
            self._mark_rows = np.zeros((chunks, max(int(self._type_offset[-1]), 1)), dtype=np.int64)
        return self._mark_rows

    def _pool(self, chunks: int) -> ThreadPoolExecutor:
        if self._executor is None or self._executor._max_workers < chunks:
            self._executor = ThreadPoolExecutor(max_workers=chunks, thread_name_prefix="sampler")
        return self._executor

    def _assemble(self, parts) -> SampledSubgraph:
        node_type, node_id, node_seed, node_hop, edge_type, edge_src, edge_dst, edge_hop = _merge(parts)
        hops = self._fanouts.shape[0]
        local, order = _local_indices(node_type, node_hop, len(self.node_types), hops)
        result = SampledSubgraph({}, {}, {}, {}, {}, {})
        for t, name in enumerate(self.node_types):
            chosen = order[node_type[order] == t]
            if len(chosen) == 0:
                continue
            result.node[name] = node_id[chosen]
            result.batch[name] = node_seed[chosen]
            result.num_sampled_nodes[name] = np.bincount(node_hop[chosen], minlength=hops + 1).tolist()
        edge_order = np.lexsort((edge_hop, edge_type))
        for e, name in enumerate(self.edge_types):
            chosen = edge_order[edge_type[edge_order] == e]
            if len(chosen) == 0:
                continue
            result.row[name] = local[edge_src[chosen]]
            result.col[name] = local[edge_dst[chosen]]
            result.num_sampled_edges[name] = np.bincount(edge_hop[chosen] - 1, minlength=hops).tolist()
        return result


def _read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view, so mmap'd and in-memory arrays share one numba type (tuples index dynamically)."""
    view = array.view()
    view.setflags(write=False)
    return view


def _local_indices(node_type: np.ndarray, node_hop: np.ndarray, types: int, hops: int):
    """Order records by (type, hop), stable, and give each record its index within its type."""
    order = np.argsort(node_type * (hops + 1) + node_hop, kind="stable")
    sorted_types = node_type[order]
    starts = np.searchsorted(sorted_types, np.arange(types))
    local = np.empty(len(order), dtype=np.int64)
    local[order] = np.arange(len(order)) - starts[sorted_types]
    return local, order


@numba.njit(cache=True, inline="always")
def _next_random(state):
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


@numba.njit(cache=True)
def _grow(array, size):
    if size <= len(array):
        return array
    bigger = np.empty(max(size, 2 * len(array)), dtype=array.dtype)
    bigger[: len(array)] = array
    return bigger


@numba.njit(cache=True)
def _visible_range(indices, times, start, end, upper, lower, has_time):
    """[lo, hi) of a time-sorted neighbourhood whose source times lie in [lower, upper]."""
    if not has_time:
        return start, end
    lo, hi = start, end
    while lo < hi:  # first position with time > upper
        mid = (lo + hi) // 2
        if times[indices[mid]] <= upper:
            lo = mid + 1
        else:
            hi = mid
    stop = lo
    lo = start
    if lower != _NO_WINDOW:
        hi = stop
        while lo < hi:  # first position with time >= lower
            mid = (lo + hi) // 2
            if times[indices[mid]] < lower:
                lo = mid + 1
            else:
                hi = mid
    return lo, stop


@numba.njit(cache=True, nogil=True)
def _sample_one_chunk(seed_type, seeds, seed_times, first, last, src_type, dst_type, type_offset, has_time,
                      times, indptr, indices, fanouts, windows, take_last, rng_seed, marks):  # fmt: skip
    hops, edge_types = fanouts.shape
    n_type = np.empty(1024, np.int64)
    n_id = np.empty(1024, np.int64)
    n_seed = np.empty(1024, np.int64)
    n_hop = np.empty(1024, np.int64)
    e_type = np.empty(1024, np.int64)
    e_src = np.empty(1024, np.int64)
    e_dst = np.empty(1024, np.int64)
    e_hop = np.empty(1024, np.int64)
    nodes = 0
    edges = 0
    # marks: record index + 1 of each node within the current seed, 0 = unseen; all zero between seeds
    picked = np.empty(0, np.int64)
    for s in range(first, last):
        seed_first_record = nodes
        state = rng_seed ^ (np.uint64(s) * np.uint64(0xD1B54A32D192ED03))
        n_type = _grow(n_type, nodes + 1)
        n_id = _grow(n_id, nodes + 1)
        n_seed = _grow(n_seed, nodes + 1)
        n_hop = _grow(n_hop, nodes + 1)
        n_type[nodes], n_id[nodes], n_seed[nodes], n_hop[nodes] = seed_type, seeds[s], s, 0
        marks[type_offset[seed_type] + seeds[s]] = nodes + 1
        nodes += 1
        frontier_start, frontier_end = seed_first_record, nodes
        for hop in range(hops):
            upper = seed_times[s]
            lower = _NO_WINDOW
            if windows[hop, 0] != _NO_WINDOW:
                lower = seed_times[s] + windows[hop, 0]
                upper = seed_times[s] + windows[hop, 1]
            for record in range(frontier_start, frontier_end):
                t = n_type[record]
                v = n_id[record]
                for e in range(edge_types):
                    k = fanouts[hop, e]
                    if dst_type[e] != t or k == 0:
                        continue
                    st = src_type[e]
                    ip = indptr[e]
                    ix = indices[e]
                    lo, hi = _visible_range(ix, times[st], ip[v], ip[v + 1], upper, lower, has_time[st])
                    count = hi - lo
                    if count <= 0:
                        continue
                    if k < 0 or count <= k:
                        take = count
                        picked = _grow(picked, take)
                        for j in range(take):
                            picked[j] = lo + j
                    elif take_last:
                        take = k
                        picked = _grow(picked, take)
                        for j in range(take):
                            picked[j] = hi - k + j
                    else:
                        take = k
                        picked = _grow(picked, take)
                        for chosen, j in enumerate(range(count - k, count)):  # Floyd: k distinct of count
                            state, r = _next_random(state)
                            candidate = np.int64(r % np.uint64(j + 1))
                            for q in range(chosen):
                                if picked[q] == lo + candidate:
                                    candidate = j
                                    break
                            picked[chosen] = lo + candidate
                    n_type = _grow(n_type, nodes + take)
                    n_id = _grow(n_id, nodes + take)
                    n_seed = _grow(n_seed, nodes + take)
                    n_hop = _grow(n_hop, nodes + take)
                    e_type = _grow(e_type, edges + take)
                    e_src = _grow(e_src, edges + take)
                    e_dst = _grow(e_dst, edges + take)
                    e_hop = _grow(e_hop, edges + take)
                    base = type_offset[st]
                    for j in range(take):
                        u = np.int64(ix[picked[j]])
                        mark = marks[base + u]
                        if mark == 0:
                            n_type[nodes], n_id[nodes], n_seed[nodes], n_hop[nodes] = st, u, s, hop + 1
                            nodes += 1
                            marks[base + u] = nodes
                            mark = nodes
                        e_type[edges], e_src[edges], e_dst[edges], e_hop[edges] = e, mark - 1, record, hop + 1
                        edges += 1
            frontier_start, frontier_end = frontier_end, nodes
        for record in range(seed_first_record, nodes):  # forget this seed's nodes
            marks[type_offset[n_type[record]] + n_id[record]] = 0
    return (n_type[:nodes], n_id[:nodes], n_seed[:nodes], n_hop[:nodes],
            e_type[:edges], e_src[:edges], e_dst[:edges], e_hop[:edges])  # fmt: skip


def _merge(parts):
    """Concatenate chunk outputs in seed order; edge endpoints become indices into the whole record list."""
    offsets = np.cumsum([0] + [len(part[0]) for part in parts])
    columns = [
        np.concatenate([part[i] for part in parts]) if parts else np.zeros(0, np.int64) for i in range(8)
    ]
    node_type, node_id, node_seed, node_hop, edge_type, edge_src, edge_dst, edge_hop = columns
    shift = np.concatenate([np.full(len(part[4]), offsets[i], np.int64) for i, part in enumerate(parts)])
    return node_type, node_id, node_seed, node_hop, edge_type, edge_src + shift, edge_dst + shift, edge_hop
