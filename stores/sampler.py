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
stream, so results do not depend on the number of threads. Threads default to `default_threads()`.

Seeds and sampled nodes are the caller's ids: for a graph built from ids out of time order, seeds are
mapped to store ids on the way in and sampled ids back on the way out (a pipeline store maps nothing).
Every node type and edge type of the graph is in the result, empty when nothing of it was sampled.
Fanouts, strategy and windows come from the sampler's `SamplerConfig`, or per call.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from stores.graph_core import StoredGraph
from stores.sampler_kernels import NO_WINDOW, chunk_counts, place, sample_chunk

__all__ = ["MAX_DEFAULT_THREADS", "SampledSubgraph", "SamplerConfig", "TemporalSampler", "default_threads"]

EdgeType = tuple[str, str, str]
MAX_DEFAULT_THREADS = 4


def default_threads() -> int:
    """Sampling threads when none are given: min(4, the CPUs this process may run on).

    The CPUs this process may use (its affinity, i.e. what a container or taskset grants), not the host's
    count; at most 4 because a batch of a few hundred seeds takes milliseconds, so more chunks add more
    hand-offs than they save, and the sampler runs beside the model's own threads.
    """
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(MAX_DEFAULT_THREADS, available))


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
    """Per node type (every one, empty when none was sampled): the caller's ids, seed index, count per hop;
    per edge type (every one): local (row, col), count per hop."""

    node: dict[str, np.ndarray]
    batch: dict[str, np.ndarray]
    num_sampled_nodes: dict[str, list[int]]
    row: dict[EdgeType, np.ndarray]
    col: dict[EdgeType, np.ndarray]
    num_sampled_edges: dict[EdgeType, list[int]]


class TemporalSampler:
    """Samples from one graph store (opened or built in memory); cheap to construct, safe to share read-only."""

    def __init__(
        self, graph: StoredGraph, config: SamplerConfig | None = None, threads: int | None = None
    ) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be 1 or more, got {threads}")
        self.graph = graph
        self.config = config
        self.threads = threads or default_threads()
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._owner_pid = os.getpid()
        self.node_types = sorted(graph.node_counts)
        self.edge_types = sorted(graph.edge_types)
        type_index = {name: i for i, name in enumerate(self.node_types)}
        self._src_type = np.array([type_index[e[0]] for e in self.edge_types], dtype=np.int64)
        self._dst_type = np.array([type_index[e[2]] for e in self.edge_types], dtype=np.int64)
        counts = np.array([graph.node_counts[t] for t in self.node_types], dtype=np.int64)
        self._type_offset = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._has_time = np.array([t in graph.node_times for t in self.node_types], dtype=np.bool_)
        manifest = graph.manifest
        self._time_offset = np.array(
            [manifest["node_types"][t]["time_offset"] for t in self.node_types], dtype=np.int64
        )
        metas = [manifest["edge_types"]["__".join(e)] for e in self.edge_types]
        self._indptr_offset = np.array([meta["indptr_offset"] for meta in metas], dtype=np.int64)
        self._single = np.array([meta["layout"] == "single" for meta in metas], dtype=np.bool_)
        self._indices_offset = np.array([meta["indices_offset"] for meta in metas], dtype=np.int64)
        self._plan = None if config is None else self._compile(config)

    def _compile(self, config: SamplerConfig) -> tuple[np.ndarray, np.ndarray, bool]:
        """(fanouts per hop and edge type, windows per hop, take the last) for the kernels."""
        windows = np.full((len(config.fanouts), 2), NO_WINDOW, dtype=np.int64)
        for hop, window in enumerate(config.windows or ()):
            if window is not None:
                windows[hop] = (int(window[0]), min(int(window[1]), 0))
        return self._fanout_matrix(config.fanouts), windows, config.strategy == "last"

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

    def _call_plan(self, fanouts, strategy, windows) -> tuple[np.ndarray, np.ndarray, bool]:
        """The sampler's config with this call's overrides (windows drop when only the fanouts change)."""
        if fanouts is None and strategy is None and windows is None:
            if self._plan is None:
                raise ValueError("give fanouts: this sampler was built without a SamplerConfig")
            return self._plan
        base = self.config
        if fanouts is None and base is None:
            raise ValueError("give fanouts: this sampler was built without a SamplerConfig")
        config = SamplerConfig(
            tuple(fanouts) if fanouts is not None else base.fanouts,
            strategy or (base.strategy if base is not None else "uniform"),
            tuple(windows) if windows is not None else (base.windows if fanouts is None else None),
        )
        return self._compile(config)

    def sample(
        self,
        seed_type: str,
        seeds: np.ndarray,
        seed_times: np.ndarray | None = None,
        rng_seed: int = 0,
        *,
        fanouts: Sequence | None = None,
        strategy: str | None = None,
        windows: Sequence | None = None,
    ) -> SampledSubgraph:
        """Sample the disjoint subgraphs of ``seeds`` (node ids of ``seed_type``) at ``seed_times``.

        ``fanouts``/``strategy``/``windows`` override the sampler's `SamplerConfig` for this call.
        """
        fanout_matrix, window_matrix, take_last = self._call_plan(fanouts, strategy, windows)
        if seed_type not in self.node_types:
            raise ValueError(f"unknown node type {seed_type!r}; known: {self.node_types}")
        seeds = np.ascontiguousarray(seeds, dtype=np.int64)
        if len(seeds) and (seeds.min() < 0 or seeds.max() >= self.graph.node_counts[seed_type]):
            raise ValueError(
                f"seed ids must lie in [0, {self.graph.node_counts[seed_type]}) for {seed_type!r}"
            )
        if seed_type in self.graph.rank:
            seeds = np.ascontiguousarray(self.graph.rank[seed_type][seeds], dtype=np.int64)
        if seed_times is None:
            seed_times = np.full(len(seeds), np.iinfo(np.int64).max, dtype=np.int64)
        seed_times = np.ascontiguousarray(seed_times, dtype=np.int64)
        if len(seed_times) != len(seeds):
            raise ValueError("give one seed time per seed")
        chunks = max(1, min(self.threads, len(seeds)))
        bounds = [len(seeds) * chunk // chunks for chunk in range(chunks + 1)]
        graph = self.graph
        arguments = (
            self.node_types.index(seed_type), seeds, seed_times, self._src_type, self._dst_type, self._type_offset,
            self._has_time, graph.times, self._time_offset, graph.indptr, self._indptr_offset, graph.indices,
            self._indices_offset, self._single, fanout_matrix, window_matrix, take_last,
            np.uint64(rng_seed & 0xFFFFFFFFFFFFFFFF),
        )  # fmt: skip

        hops = fanout_matrix.shape[0]
        types, edge_types = len(self.node_types), len(self.edge_types)

        parts: list = [None] * chunks
        shared: dict = {}

        def plan_placement() -> None:  # runs once, in the last thread to finish sampling
            plan = _placement([part[2] for part in parts], [part[3] for part in parts])
            total_nodes, total_edges = int(plan["node_totals"].sum()), int(plan["edge_totals"].sum())
            shared["plan"] = plan
            shared["out"] = (np.empty(total_nodes, np.int64), np.empty(total_nodes, np.int64),
                             np.empty(total_edges, np.int64), np.empty(total_edges, np.int64))  # fmt: skip

        barrier = threading.Barrier(chunks, action=plan_placement)

        def work(chunk: int) -> None:
            """Sample a chunk, wait until every chunk's counts are known, then write its part of the output."""
            node_rows, edge_rows = sample_chunk(
                *arguments[:3], bounds[chunk], bounds[chunk + 1], *arguments[3:]
            )
            parts[chunk] = (
                node_rows,
                edge_rows,
                *chunk_counts(node_rows, edge_rows, types, edge_types, hops),
            )
            barrier.wait()
            plan = shared["plan"]
            place(node_rows, edge_rows, plan["node_base"][chunk], plan["edge_base"][chunk], plan["type_start"],
                   *shared["out"])  # fmt: skip

        # Forked (e.g. a DataLoader worker): the parent's threads did not follow, its lock may be held.
        if os.getpid() != self._owner_pid:
            self._executor, self._lock, self._owner_pid = None, threading.Lock(), os.getpid()
        with self._lock:  # one sample call at a time per sampler (its thread pool is shared)
            self._map(work, chunks)
        return self._result(shared["plan"], *shared["out"])

    def _map(self, function, chunks: int) -> list:
        """Run chunk 0 in this thread and the others on the pool (one wake-up fewer per batch)."""
        if chunks == 1:
            return [function(0)]
        if self._executor is None or self._executor._max_workers < chunks - 1:
            self._executor = ThreadPoolExecutor(max_workers=chunks - 1, thread_name_prefix="sampler")
        futures = [self._executor.submit(function, chunk) for chunk in range(1, chunks)]
        first = function(0)
        return [first, *(future.result() for future in futures)]

    def _result(self, plan: dict, node_id, node_seed, row, col) -> SampledSubgraph:
        """Every node and edge type's slice of the output (empty when none), node ids as caller ids."""
        result = SampledSubgraph({}, {}, {}, {}, {}, {})
        type_start, edge_start = plan["type_start"], plan["edge_start"]
        for t, name in enumerate(self.node_types):
            ids = node_id[type_start[t] : type_start[t + 1]]
            order = self.graph.order.get(name)
            result.node[name] = ids if order is None else order[ids].astype(np.int64)
            result.batch[name] = node_seed[type_start[t] : type_start[t + 1]]
            result.num_sampled_nodes[name] = plan["node_totals"][t].tolist()
        for e, name in enumerate(self.edge_types):
            result.row[name] = row[edge_start[e] : edge_start[e + 1]]
            result.col[name] = col[edge_start[e] : edge_start[e + 1]]
            result.num_sampled_edges[name] = plan["edge_totals"][e].tolist()
        return result


def _placement(node_counts: list[np.ndarray], edge_counts: list[np.ndarray]) -> dict:
    """Where each chunk's (type, hop) and (edge type, hop) runs go in the output: hop-major, then seed order."""
    nodes = np.stack(node_counts)  # chunks x types x (hops + 1)
    edges = np.stack(edge_counts)  # chunks x edge types x hops
    plan = {"node_totals": nodes.sum(0), "edge_totals": edges.sum(0)}
    for kind, counts, totals in (("node", nodes, plan["node_totals"]), ("edge", edges, plan["edge_totals"])):
        block_start = np.concatenate([[0], np.cumsum(totals.sum(1))]).astype(np.int64)
        hop_start = np.cumsum(totals, axis=1) - totals
        chunk_start = np.cumsum(counts, axis=0) - counts
        plan[f"{kind}_base"] = block_start[:-1][None, :, None] + hop_start[None] + chunk_start
        plan["type_start" if kind == "node" else "edge_start"] = block_start
    return plan
