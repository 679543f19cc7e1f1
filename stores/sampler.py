"""The temporal neighbour sampler: a pure function of (graph, seeds, seed times, fanouts, strategy, rng seed).

Semantics (those of pyg-lib's temporal sampler): subgraphs are disjoint per seed (a node reached from two
seeds appears twice; within one seed's subgraph it appears once), seeds come first, and a neighbour of a
temporal node type is visible iff its time <= the root seed's time (static node types are unfiltered).
Per hop and edge type: ``k`` neighbours, ``-1`` for all; strategy ``last`` takes the ``k`` most recent
visible ones, ``uniform`` draws ``k`` without replacement (Floyd's algorithm). An optional window per hop
keeps neighbours with time in [seed + a, seed + b] (b is capped at 0). Output per node type is in
(hop, seed) order, so ``num_sampled_nodes`` describes layers as PyG expects.

Seeds are split into one contiguous chunk per thread, of about equal work (by the neighbours each seed's
first hop takes), and the whole batch runs in one compiled call (`stores.sampler_batch`), which also
checks the seeds and maps them to store ids: on the calling thread, or on numba's OpenMP threads, one
chunk each. Every seed
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

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from stores.graph_core import StoredGraph
from stores.sampler_batch import row_dtype, sample_batch, sample_batch_parallel
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
        self.node_types = sorted(graph.node_counts)
        self._node_counts = graph.node_counts  # a property that builds its dict on every read
        # Row buffers (rows of 4 ints; per chunk when parallel) kept from one batch to the next: sampling into
        # fresh memory would allocate and page-fault it again for every batch. The kernels replace them when
        # too small.
        rows = row_dtype(sum(self._node_counts.values()))
        self._serial_buffers = (np.empty((0, 4), rows), np.empty((0, 4), rows))
        self._parallel_buffers = (np.empty((0, 0, 4), rows), np.empty((0, 0, 4), rows))
        self._orders = dict(graph.order)  # node type -> (store id -> caller id), where they differ
        self.edge_types = sorted(graph.edge_types)
        self._type_index = {name: i for i, name in enumerate(self.node_types)}
        self._plan = None if config is None else self._compile(config)
        no_rank = np.empty(0, np.int64)
        self._seed_rank = {name: np.ascontiguousarray(graph.rank.get(name, no_rank), np.int64)
                           for name in self.node_types}  # fmt: skip
        self._graph_arguments = self._kernel_graph_arguments()

    def _kernel_graph_arguments(self) -> tuple:
        """The graph as the kernels take it: per edge type its end types, per node type its id and time
        offsets, the concatenated arrays, per edge type its offsets and layout."""
        graph, index = self.graph, self._type_index
        counts = np.array([self._node_counts[t] for t in self.node_types], dtype=np.int64)
        node_metas = [graph.manifest["node_types"][t] for t in self.node_types]
        edge_metas = [graph.manifest["edge_types"]["__".join(e)] for e in self.edge_types]
        # Plain ndarray views of the (memory-mapped) arrays: numba types an np.memmap argument on its slow
        # path, ~3 µs each call after a batch has flushed the caches.
        times, indptr, indices = (
            np.asarray(a).view(np.ndarray) for a in (graph.times, graph.indptr, graph.indices)
        )
        return (
            np.array([index[e[0]] for e in self.edge_types], dtype=np.int64),  # source type
            np.array([index[e[2]] for e in self.edge_types], dtype=np.int64),  # destination type
            np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),  # type offset
            np.array([t in graph.node_times for t in self.node_types], dtype=np.bool_),  # has time
            times,
            np.array([meta["time_offset"] for meta in node_metas], dtype=np.int64),
            indptr,
            np.array([meta["indptr_offset"] for meta in edge_metas], dtype=np.int64),
            indices,
            np.array([meta["indices_offset"] for meta in edge_metas], dtype=np.int64),
            np.array([meta["layout"] == "single" for meta in edge_metas], dtype=np.bool_),
        )

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
        plan = self._call_plan(fanouts, strategy, windows)
        seed_type_index = self._type_index.get(seed_type)
        if seed_type_index is None:
            raise ValueError(f"unknown node type {seed_type!r}; known: {self.node_types}")
        seeds = np.ascontiguousarray(seeds, dtype=np.int64)
        if seed_times is None:
            seed_times = np.full(len(seeds), np.iinfo(np.int64).max, dtype=np.int64)
        seed_times = np.ascontiguousarray(seed_times, dtype=np.int64)
        if len(seed_times) != len(seeds):
            raise ValueError("give one seed time per seed")
        seed_count = self._node_counts[seed_type]
        arguments = (seed_type_index, seed_count, self._seed_rank[seed_type], seeds, seed_times,
                     *self._graph_arguments, *plan, np.uint64(rng_seed & 0xFFFFFFFFFFFFFFFF))  # fmt: skip
        chunks = max(1, min(self.threads, len(seeds)))
        # Forked (e.g. a DataLoader worker): the parent's lock may be held by a thread that did not follow.
        if os.getpid() != self._owner_pid:
            self._lock, self._owner_pid = threading.Lock(), os.getpid()
        with self._lock:  # one sample call at a time per sampler (its row buffers are shared)
            if chunks > 1 and _may_run_parallel():
                bad_seed, *output = self._sample_parallel(chunks, arguments)
            else:
                bad_seed, node_buffer, edge_buffer, *output = sample_batch(*self._serial_buffers, *arguments)
                self._serial_buffers = (node_buffer, edge_buffer)
        if bad_seed >= 0:
            raise ValueError(
                f"seed ids must lie in [0, {seed_count}) for {seed_type!r}: seeds[{bad_seed}] is {seeds[bad_seed]}"
            )
        return self._result(plan[0].shape[0], *output)

    def _sample_parallel(self, chunks: int, arguments: tuple) -> list:
        """The batch on ``chunks`` numba threads, into per-chunk row buffers kept for the next batch."""
        get_threads, set_threads = _thread_count_functions()
        previous, wanted = get_threads(), min(chunks, numba.config.NUMBA_NUM_THREADS)
        if previous != wanted:
            set_threads(wanted)
        try:
            call = (*self._parallel_buffers, chunks, *arguments)
            if _launches_must_queue():
                with _LAUNCH_LOCK:
                    bad_seed, node_buffers, edge_buffers, *output = sample_batch_parallel(*call)
            else:
                bad_seed, node_buffers, edge_buffers, *output = sample_batch_parallel(*call)
        finally:
            if previous != wanted:
                set_threads(previous)
        self._parallel_buffers = (node_buffers, edge_buffers)
        return [bad_seed, *output]

    def _result(self, hops: int, node_id, node_seed, row, col, layout) -> SampledSubgraph:
        """Every node and edge type's slice of the output (empty when none), node ids as caller ids."""
        layout = layout.tolist()  # one call: numpy runs slowly on the caches a batch has just flushed
        types, edge_types = len(self.node_types), len(self.edge_types)
        type_start, edge_start = layout[: types + 1], layout[types + 1 : types + edge_types + 2]
        node_totals = _runs(layout, types + edge_types + 2, self.node_types, hops + 1)
        edge_totals = _runs(layout, types + edge_types + 2 + types * (hops + 1), self.edge_types, hops)
        # A slice costs ~0.5 µs on the caches a batch has flushed; most types of a batch are empty (15 of
        # F1's 26 edge types in a 2-hop batch of drivers), and they all share one empty array instead.
        result = SampledSubgraph({}, {}, node_totals, {}, {}, edge_totals)
        for name, start, end in zip(self.node_types, type_start, type_start[1:], strict=False):
            if start == end:
                result.node[name] = result.batch[name] = _NOTHING
            else:  # slicing with Python ints: a third of numpy ints' cost
                result.node[name], result.batch[name] = node_id[start:end], node_seed[start:end]
        for name, order in self._orders.items():  # types whose caller ids are not their store ids
            result.node[name] = order[result.node[name]].astype(np.int64)
        for name, start, end in zip(self.edge_types, edge_start, edge_start[1:], strict=False):
            if start == end:
                result.row[name] = result.col[name] = _NOTHING
            else:
                result.row[name], result.col[name] = row[start:end], col[start:end]
        return result


def _runs(layout: list, offset: int, names: list, width: int) -> dict:
    """``width`` consecutive counts per name, read from ``layout`` at ``offset``."""
    return {name: layout[offset + i * width : offset + (i + 1) * width] for i, name in enumerate(names)}


_NOTHING = np.empty(0, np.int64)  # every empty type's ids, seeds, rows and columns
_PARALLEL_PID: int | None = None  # the process whose numba threads sampled first


def _may_run_parallel() -> bool:
    """Whether this process may start numba's (OpenMP) threads: not in a child forked after its parent did
    (GNU OpenMP aborts such a child)."""
    global _PARALLEL_PID
    if _PARALLEL_PID is None:
        _PARALLEL_PID = os.getpid()
    return os.getpid() == _PARALLEL_PID


def _thread_count_functions() -> tuple:
    """(get, set) this thread's numba thread count. numba's public pair takes a multiprocessing lock on
    every call (~12 µs a pair after a batch); once its threads are launched, the threading layer's own
    functions, which the public ones wrap, answer in well under a microsecond."""
    global _THREAD_COUNT_FUNCTIONS
    if _THREAD_COUNT_FUNCTIONS is None:
        numba.get_num_threads()  # launches numba's threads if they are not yet
        layer = numba.np.ufunc.parallel
        direct = (getattr(layer, "_get_num_threads", None), getattr(layer, "_set_num_threads", None))
        usable = all(callable(function) for function in direct)
        _THREAD_COUNT_FUNCTIONS = direct if usable else (numba.get_num_threads, numba.set_num_threads)
    return _THREAD_COUNT_FUNCTIONS


_THREAD_COUNT_FUNCTIONS: tuple | None = None
_LAUNCH_LOCK = threading.Lock()
_QUEUE_LAUNCHES: bool | None = None  # known after the first parallel launch


def _launches_must_queue() -> bool:
    """Whether parallel launches must take turns: numba's own `workqueue` layer (used when neither OpenMP
    nor TBB is there) aborts when two threads launch at once; before the first launch, to be safe."""
    global _QUEUE_LAUNCHES
    if _QUEUE_LAUNCHES is None:
        try:
            _QUEUE_LAUNCHES = numba.threading_layer() == "workqueue"
        except ValueError:  # no parallel launch yet in this process
            return True
    return _QUEUE_LAUNCHES
