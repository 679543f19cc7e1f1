"""One sampled batch in one compiled call: the seeds checked and mapped to store ids, their chunks sampled,
then placed in the output, with no Python between the steps. `sample_batch` runs one chunk on the calling
thread; `sample_batch_parallel` runs one chunk per numba thread (OpenMP's team: waking it costs
microseconds, where each hand-off to a sleeping Python thread cost ~90 µs on a VM, three a batch, against
~1 ms to sample 512 F1 seeds). Every numpy call after a batch runs on caches the batch has just flushed
(a 1 µs reduction takes ~20 µs there), so what Python did around the kernel (range checks, buffer
checks, the layout's pieces) happens in here.

Both take the seeds in the caller's ids (``seed_rank``: caller id -> store id, empty when they agree) and
return (first seed out of [0, ``seed_count``), or -1; node buffer(s), edge buffer(s), grown or as given;
node ids, seed index per node, local (row, col) per edge; the layout, one array: where each node type's
slice starts and the total, the same per edge type, then node counts per (type, hop) and edge counts per
(edge type, hop), flattened). With a seed out of range nothing is sampled and the outputs are empty.
"""

from __future__ import annotations

import numba
import numpy as np

from stores.sampler_kernels import sample_chunk_into
from stores.sampler_placement import place, placement

__all__ = ["row_dtype", "sample_batch", "sample_batch_parallel"]

FIRST_ROWS_PER_SEED = 8  # a parallel chunk's first row buffers; they grow to a quarter more than needed


def row_dtype(nodes: int) -> type:
    """The row buffers' integer type for a graph of ``nodes`` nodes: int32 when every id fits (half the
    memory traffic of int64: 7-8% faster on F1), else int64. Rows also hold a chunk's record numbers, which
    stay far below 2^31 (a chunk of 2^31 sampled nodes would need 64 GB of rows)."""
    return np.int32 if nodes < 2**31 else np.int64


@numba.njit(cache=True, nogil=True)
def sample_batch(node_buffer, edge_buffer, seed_type, seed_count, seed_rank, seeds, seed_times, src_type, dst_type,
                 type_offset, has_time, times, time_offset, indptr, indptr_offset, indices, indices_offset, single,
                 fanouts, windows, take_last, rng_seed):  # fmt: skip
    """All seeds as one chunk on this thread. ``node_buffer``/``edge_buffer`` (n x 4 int64, any n) are
    reused, and replaced when too small."""
    bad_seed, seeds = _store_seeds(seeds, seed_count, seed_rank)
    node_counts, edge_counts = _new_counts(1, type_offset, fanouts)
    nodes = edges = 0
    if bad_seed < 0:
        node_buffer, edge_buffer, nodes, edges = sample_chunk_into(
            node_buffer, edge_buffer, node_counts[0], edge_counts[0], seed_type, seeds, seed_times, 0, len(seeds),
            src_type, dst_type, type_offset, has_time, times, time_offset, indptr, indptr_offset, indices,
            indices_offset, single, fanouts, windows, take_last, rng_seed,
        )  # fmt: skip
    node_base, edge_base, type_start, edge_start, node_totals, edge_totals = placement(
        node_counts, edge_counts
    )
    node_id, node_seed, row, col = _outputs(type_start, edge_start)
    place(node_buffer[:nodes], edge_buffer[:edges], node_base[0], edge_base[0], type_start, node_id, node_seed, row,
          col)  # fmt: skip
    layout = _layout(type_start, edge_start, node_totals, edge_totals)
    return bad_seed, node_buffer, edge_buffer, node_id, node_seed, row, col, layout


@numba.njit(cache=True, nogil=True, parallel=True)
def sample_batch_parallel(node_buffers, edge_buffers, chunks, seed_type, seed_count, seed_rank, seeds, seed_times,
                          src_type, dst_type, type_offset, has_time, times, time_offset, indptr, indptr_offset,
                          indices, indices_offset, single, fanouts, windows, take_last, rng_seed):  # fmt: skip
    """``chunks`` contiguous runs of seeds, one numba thread each, sampled into ``node_buffers[c]`` and
    ``edge_buffers[c]`` (chunks x n x 4 int64, any shape). When a chunk needs more rows than its buffer
    has, the buffers grow to a quarter more than the most any chunk needed and the batch is sampled again
    (the same sample: every seed has its own random stream)."""
    # Only the two prange loops may be parallel: numba turns a numpy call here (np.zeros, .max()) into a
    # parallel region of its own, each a wake-up and a join of the team; the helpers are not parallel.
    bad_seed, seeds = _store_seeds(seeds, seed_count, seed_rank)
    bounds = _balanced_bounds(
        chunks, bad_seed, seed_type, seeds, dst_type, single, indptr, indptr_offset, fanouts
    )
    node_counts, edge_counts = _new_counts(chunks, type_offset, fanouts)
    used = np.empty((chunks, 2), np.int64)
    node_buffers, edge_buffers = _chunk_buffers(node_buffers, edge_buffers, chunks, len(seeds))
    while bad_seed < 0:
        for chunk in numba.prange(chunks):
            node_rows, edge_rows, nodes, edges = sample_chunk_into(
                node_buffers[chunk], edge_buffers[chunk], node_counts[chunk], edge_counts[chunk], seed_type,
                seeds, seed_times, bounds[chunk], bounds[chunk + 1], src_type, dst_type, type_offset, has_time,
                times, time_offset, indptr, indptr_offset, indices, indices_offset, single, fanouts, windows,
                take_last, rng_seed,
            )  # fmt: skip
            # A buffer replaced (grown: the kernel keeps some rows spare) holds this chunk's rows, not ours.
            grown = node_rows.shape[0] != node_buffers.shape[1] or edge_rows.shape[0] != edge_buffers.shape[1]
            used[chunk, 0] = node_rows.shape[0] if grown else nodes
            used[chunk, 1] = edge_rows.shape[0] if grown else edges
        fitted, node_buffers, edge_buffers = _fitted_buffers(node_buffers, edge_buffers, used)
        if fitted:
            break
    node_base, edge_base, type_start, edge_start, node_totals, edge_totals = placement(
        node_counts, edge_counts
    )
    node_id, node_seed, row, col = _outputs(type_start, edge_start)
    if type_start[-1] > 0:
        for chunk in numba.prange(chunks):
            place(node_buffers[chunk, : used[chunk, 0]], edge_buffers[chunk, : used[chunk, 1]], node_base[chunk],
                  edge_base[chunk], type_start, node_id, node_seed, row, col)  # fmt: skip
    layout = _layout(type_start, edge_start, node_totals, edge_totals)
    return bad_seed, node_buffers, edge_buffers, node_id, node_seed, row, col, layout


@numba.njit(cache=True, nogil=True)
def _balanced_bounds(chunks, bad_seed, seed_type, seeds, dst_type, single, indptr, indptr_offset, fanouts):
    """Contiguous runs of seeds with about equal work, by the neighbours each seed's first hop takes (its
    neighbourhood sizes, capped by the fanouts): equal runs of seeds left one thread waiting ~10% of a
    [128, 64] batch on F1, where some drivers have ten times the races of others. All empty when a seed
    is out of range (nothing is read with it)."""
    if bad_seed >= 0:
        return np.zeros(chunks + 1, np.int64)
    weight = np.ones(seeds.shape[0] + 1, np.int64)  # weight[i + 1]: seed i's; weight[0] = 0
    weight[0] = 0
    for e in range(dst_type.shape[0]):
        k = fanouts[0, e]
        if dst_type[e] != seed_type or k == 0:
            continue
        for i in range(seeds.shape[0]):
            if single[e]:
                weight[i + 1] += 1
            else:
                at = indptr_offset[e] + seeds[i]
                size = indptr[at + 1] - indptr[at]
                weight[i + 1] += size if k < 0 or size < k else k
    total = weight.cumsum()
    bounds = np.empty(chunks + 1, np.int64)
    bounds[0], bounds[chunks] = 0, seeds.shape[0]
    for chunk in range(1, chunks):
        bounds[chunk] = np.searchsorted(total, total[-1] * chunk // chunks)
    return bounds


@numba.njit(cache=True, nogil=True)
def _chunk_buffers(node_buffers, edge_buffers, chunks, seeds):
    """The row buffers, or new ones when they have fewer than ``chunks`` chunks (at first)."""
    if node_buffers.shape[0] >= chunks:
        return node_buffers, edge_buffers
    rows = max(node_buffers.shape[1], FIRST_ROWS_PER_SEED * (seeds // chunks + 1))
    return (
        np.empty((chunks, rows, 4), node_buffers.dtype),
        np.empty((chunks, max(edge_buffers.shape[1], rows), 4), edge_buffers.dtype),
    )


@numba.njit(cache=True, nogil=True)
def _fitted_buffers(node_buffers, edge_buffers, used):
    """(whether every chunk's rows fitted, the buffers: as given, or a quarter bigger than the most any
    chunk needed, for sampling the batch again)."""
    most_nodes, most_edges = used[:, 0].max(), used[:, 1].max()
    if most_nodes <= node_buffers.shape[1] and most_edges <= edge_buffers.shape[1]:
        return True, node_buffers, edge_buffers
    most_nodes = max(most_nodes, node_buffers.shape[1])
    most_edges = max(most_edges, edge_buffers.shape[1])
    node_buffers = np.empty((node_buffers.shape[0], most_nodes + most_nodes // 4, 4), node_buffers.dtype)
    edge_buffers = np.empty((edge_buffers.shape[0], most_edges + most_edges // 4, 4), edge_buffers.dtype)
    return False, node_buffers, edge_buffers


@numba.njit(cache=True, nogil=True)
def _store_seeds(seeds, seed_count, seed_rank):
    """(index of the first seed outside [0, seed_count), or -1; the seeds as store ids)."""
    for index in range(seeds.shape[0]):
        if seeds[index] < 0 or seeds[index] >= seed_count:
            return index, seeds
    if seed_rank.shape[0] == 0:
        return -1, seeds
    store_ids = np.empty_like(seeds)
    for index in range(seeds.shape[0]):
        store_ids[index] = seed_rank[seeds[index]]
    return -1, store_ids


@numba.njit(cache=True, nogil=True)
def _new_counts(chunks, type_offset, fanouts):
    """Per chunk: nodes per (type, hop) and edges per (edge type, hop), zero until the sampling fills them."""
    hops, edge_types = fanouts.shape
    node_counts = np.zeros((chunks, type_offset.shape[0] - 1, hops + 1), np.int64)
    return node_counts, np.zeros((chunks, edge_types, hops), np.int64)


@numba.njit(cache=True, nogil=True)
def _outputs(type_start, edge_start):
    """(node id, node seed, row, col), sized for the batch."""
    nodes, edges = type_start[-1], edge_start[-1]
    return (
        np.empty(nodes, np.int64),
        np.empty(nodes, np.int64),
        np.empty(edges, np.int64),
        np.empty(edges, np.int64),
    )


@numba.njit(cache=True, nogil=True)
def _layout(type_start, edge_start, node_totals, edge_totals):
    """type_start, edge_start, node_totals and edge_totals in one array: Python reads it with one call."""
    return np.concatenate((type_start, edge_start, node_totals.ravel(), edge_totals.ravel()))
