"""The temporal neighbour sampler: a pure function of (graph, seeds, seed times, fanouts, strategy, rng seed).

Semantics (those of pyg-lib's temporal sampler): subgraphs are disjoint per seed (a node reached from two
seeds appears twice; within one seed's subgraph it appears once), seeds come first, and a neighbour of a
temporal node type is visible iff its time <= the root seed's time (static node types are unfiltered).
Per hop and edge type: ``k`` neighbours, ``-1`` for all; strategy ``last`` takes the ``k`` most recent
visible ones, ``uniform`` draws ``k`` without replacement (Floyd's algorithm). An optional window per hop
keeps neighbours with time in [seed + a, seed + b] (b is capped at 0). Output per node type is in
(hop, seed) order, so ``num_sampled_nodes`` describes layers as PyG expects.

Seeds are split into one contiguous chunk per thread and the whole batch runs in one compiled call
(`stores.sampler_batch`): on the calling thread, or on numba's OpenMP threads, one chunk each. Every seed
draws from its own counter-based random stream, so results do not depend on the number of threads.
Threads default to `default_threads()`. A process forked after this one sampled on several threads (a
DataLoader worker, say) samples on one: GNU OpenMP does not survive a fork, and the workers are the
parallelism there.

Seeds and sampled nodes are the caller's ids: for a graph built from ids out of time order, seeds are
mapped to store ids on the way in and sampled ids back on the way out (a pipeline store maps nothing).
Every node type and edge type of the graph is in the result, empty when nothing of it was sampled.
Fanouts, strategy and windows come from the sampler's `SamplerConfig`, or per call.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from stores.graph_core import StoredGraph
from stores.sampler_batch import sample_batch, sample_batch_parallel
from stores.sampler_search import NO_WINDOW

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
        self._lock = threading.Lock()
        self._owner_pid = os.getpid()
        self._buffers = _RowBuffers()
        self.node_types = sorted(graph.node_counts)
        self._node_counts = graph.node_counts  # a property that builds its dict on every read
        self._orders = [graph.order.get(name) for name in self.node_types]  # store id -> caller id, or None
        self.edge_types = sorted(graph.edge_types)
        type_index = {name: i for i, name in enumerate(self.node_types)}
        self._src_type = np.array([type_index[e[0]] for e in self.edge_types], dtype=np.int64)
        self._dst_type = np.array([type_index[e[2]] for e in self.edge_types], dtype=np.int64)
        counts = np.array([self._node_counts[t] for t in self.node_types], dtype=np.int64)
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
        if len(seeds) and (seeds.min() < 0 or seeds.max() >= self._node_counts[seed_type]):
            raise ValueError(f"seed ids must lie in [0, {self._node_counts[seed_type]}) for {seed_type!r}")
        if seed_type in self.graph.rank:
            seeds = np.ascontiguousarray(self.graph.rank[seed_type][seeds], dtype=np.int64)
        if seed_times is None:
            seed_times = np.full(len(seeds), np.iinfo(np.int64).max, dtype=np.int64)
        seed_times = np.ascontiguousarray(seed_times, dtype=np.int64)
        if len(seed_times) != len(seeds):
            raise ValueError("give one seed time per seed")
        graph = self.graph
        arguments = (
            self.node_types.index(seed_type), seeds, seed_times, self._src_type, self._dst_type, self._type_offset,
            self._has_time, graph.times, self._time_offset, graph.indptr, self._indptr_offset, graph.indices,
            self._indices_offset, self._single, fanout_matrix, window_matrix, take_last,
            np.uint64(rng_seed & 0xFFFFFFFFFFFFFFFF),
        )  # fmt: skip
        chunks = max(1, min(self.threads, len(seeds)))
        # Forked (e.g. a DataLoader worker): the parent's lock may be held by a thread that did not follow.
        if os.getpid() != self._owner_pid:
            self._lock, self._owner_pid = threading.Lock(), os.getpid()
        with self._lock:  # one sample call at a time per sampler (its row buffers are shared)
            if chunks > 1 and _may_run_parallel():
                output = self._sample_parallel(chunks, arguments)
            else:
                node_buffer, edge_buffer, *output = sample_batch(*self._buffers.serial, *arguments)
                self._buffers.serial = (node_buffer, edge_buffer)
        return self._result(*output)

    def _sample_parallel(self, chunks: int, arguments: tuple) -> list:
        """The batch on ``chunks`` numba threads, into per-chunk buffers grown (and the batch resampled)
        when a chunk needed more rows than they had."""
        seeds = arguments[1]
        bounds = np.array([len(seeds) * chunk // chunks for chunk in range(chunks + 1)], dtype=np.int64)
        previous = numba.get_num_threads()
        numba.set_num_threads(min(chunks, numba.config.NUMBA_NUM_THREADS))
        try:
            while True:
                node_buffers, edge_buffers = self._buffers.parallel(chunks, len(seeds) // chunks + 1)
                with _LAUNCH_LOCK if _launches_must_queue() else contextlib.nullcontext():
                    used, *output = sample_batch_parallel(node_buffers, edge_buffers, bounds, *arguments)
                if self._buffers.fits(used):
                    return output
        finally:
            numba.set_num_threads(previous)

    def _result(
        self, node_id, node_seed, row, col, node_totals, edge_totals, type_start, edge_start
    ) -> SampledSubgraph:
        """Every node and edge type's slice of the output (empty when none), node ids as caller ids."""
        result = SampledSubgraph({}, {}, dict(zip(self.node_types, node_totals.tolist(), strict=True)), {}, {},
                                 dict(zip(self.edge_types, edge_totals.tolist(), strict=True)))  # fmt: skip
        start = 0
        for name, end, order in zip(self.node_types, type_start[1:].tolist(), self._orders, strict=True):
            ids = node_id[start:end]  # slicing with Python ints: a third of numpy ints' cost
            result.node[name] = ids if order is None else order[ids].astype(np.int64)
            result.batch[name] = node_seed[start:end]
            start = end
        start = 0
        for name, end in zip(self.edge_types, edge_start[1:].tolist(), strict=True):
            result.row[name], result.col[name] = row[start:end], col[start:end]
            start = end
        return result


_PARALLEL_PID: int | None = None  # the process whose numba threads sampled first


def _may_run_parallel() -> bool:
    """Whether this process may start numba's (OpenMP) threads: not in a child forked after its parent did
    (GNU OpenMP aborts such a child)."""
    global _PARALLEL_PID
    if _PARALLEL_PID is None:
        _PARALLEL_PID = os.getpid()
    return os.getpid() == _PARALLEL_PID


_LAUNCH_LOCK = threading.Lock()


def _launches_must_queue() -> bool:
    """Whether parallel launches must take turns: numba's own `workqueue` layer (used when neither OpenMP
    nor TBB is there) aborts when two threads launch at once; before the first launch, to be safe."""
    try:
        return numba.threading_layer() == "workqueue"
    except ValueError:  # no parallel launch yet in this process
        return True


class _RowBuffers:
    """A sampler's node and edge row buffers (rows of 4 int64), kept from one batch to the next: sampling
    into fresh memory would allocate and page-fault it again for every batch."""

    def __init__(self) -> None:
        self.serial = (
            np.empty((0, 4), np.int64),
            np.empty((0, 4), np.int64),
        )  # replaced by what the kernel returns
        self._parallel = (np.empty((0, 0, 4), np.int64), np.empty((0, 0, 4), np.int64))

    def parallel(self, chunks: int, seeds_per_chunk: int) -> tuple[np.ndarray, np.ndarray]:
        """chunks x rows x 4 buffers: at least as many chunks and rows as before (8 rows a seed to start)."""
        if self._parallel[0].shape[0] < chunks:
            self._parallel = tuple(
                np.empty((chunks, max(buffers.shape[1], 8 * seeds_per_chunk), 4), np.int64)
                for buffers in self._parallel
            )
        return self._parallel

    def fits(self, used: np.ndarray) -> bool:
        """Whether every chunk's rows fitted; if not, the buffers grow to a quarter more than was used."""
        node_buffers, edge_buffers = self._parallel
        most_nodes, most_edges = int(used[:, 0].max()), int(used[:, 1].max())
        if most_nodes <= node_buffers.shape[1] and most_edges <= edge_buffers.shape[1]:
            return True
        chunks = node_buffers.shape[0]
        rows = (max(most_nodes, node_buffers.shape[1]), max(most_edges, edge_buffers.shape[1]))
        self._parallel = tuple(np.empty((chunks, n + n // 4, 4), np.int64) for n in rows)
        return False
