"""The compiled core of the temporal sampler (numba, releases the GIL): sampling one chunk of seeds.
`stores.sampler_batch` runs it over a batch's chunks and `stores.sampler` is the Python API around both.

Records: nodes as rows (type, id, seed, hop), edges as rows (edge type, src record, dst record, hop).

How it is fast (docs/benchmarks.md has the measurements):
- A chunk is sampled a block of seeds at a time, one hop at a time across the block (every seed keeps its
  own subgraph, dedup entries and random stream, so the result is that of sampling seed by seed): each
  hop first reads every frontier node's neighbourhood bounds, then finds every visible range, then picks,
  deduplicates and writes. Each pass is a loop of independent memory reads, which the CPU overlaps, where
  sampling seed by seed waits for one cache miss after another.
- The passes are functions that never replace an array they were given, so numba counts no references
  inside their loops; buffers are sized before each pass.
- Node ids follow time order, so the neighbours visible at time T are those with id < cut(T): a seed
  with several big neighbourhoods of a type finds its cut once in the type's times and then searches
  each neighbourhood on ids alone (one memory read per step instead of two), checking the bounds found on
  the times themselves.
"""

from __future__ import annotations

import numba
import numpy as np

from stores.sampler_search import NO_WINDOW, count_at_most, count_below, visible_by_id, visible_range

__all__ = ["sample_chunk_into"]

BLOCK = 16  # seeds sampled together, hop by hop
SMALL = 64  # neighbourhoods up to this size are searched on their times (no cut needed)
NO_CUT, ONE_SEARCHED = -1, -2  # a cut not found yet, without or after a big neighbourhood searched on times


@numba.njit(cache=True, inline="always")
def _next_random(state):
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


@numba.njit(cache=True, nogil=True)
def _grow_rows(buffer, rows, used):
    """A buffer of at least ``rows`` rows (twice the old one's) holding the old one's first ``used`` rows."""
    bigger = np.empty((max(rows, 2 * buffer.shape[0]), buffer.shape[1]), dtype=buffer.dtype)
    bigger[:used] = buffer[:used]
    return bigger


@numba.njit(cache=True, nogil=True)
def _bigger(buffer, size):
    """A new buffer of at least ``size`` entries (twice the old one's); nothing copied."""
    return np.empty(max(size, 2 * buffer.shape[0]), dtype=buffer.dtype)


@numba.njit(cache=True, inline="always")
def _slot(key, seed, mask):
    mixed = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(seed) * np.uint64(0xC2B2AE3D27D4EB4F)
    return np.int64(mixed >> np.uint64(32)) & mask


@numba.njit(cache=True, inline="always")
def _lookup(table, generation, key, seed):
    """The record + 1 of node ``key`` in ``seed``'s subgraph, 0 if absent. Rows: key, seed, value, stamp."""
    mask = table.shape[0] - 1
    slot = _slot(key, seed, mask)
    while table[slot, 3] == generation:
        if table[slot, 0] == key and table[slot, 1] == seed:
            return table[slot, 2]
        slot = (slot + 1) & mask
    return 0


@numba.njit(cache=True, inline="always")
def _insert(table, generation, key, seed, value):
    mask = table.shape[0] - 1
    slot = _slot(key, seed, mask)
    while table[slot, 3] == generation:
        slot = (slot + 1) & mask
    table[slot, 0] = key
    table[slot, 1] = seed
    table[slot, 2] = value
    table[slot, 3] = generation


@numba.njit(cache=True, nogil=True)
def _rehash(node_rows, type_offset, first_record, end_record, capacity, generation):
    """A table of ``capacity`` slots holding the block's records so far (first_record .. end_record-1)."""
    table = np.zeros((capacity, 4), np.int64)
    for record in range(first_record, end_record):
        key = type_offset[node_rows[record, 0]] + node_rows[record, 1]
        _insert(table, generation, key, node_rows[record, 2], record + 1)
    return table


# The hops are sampled by the three functions below, which never replace an array they were given: numba
# then takes no reference counts inside their loops (atomic increments and decrements on every iteration
# cost about half the time when the buffers could be regrown in the middle of a loop). `sample_chunk_into`
# sizes every buffer for the next step before calling it.


@numba.njit(cache=True, nogil=True)
def _frontier_pairs(node_rows, frontier_start, frontier_end, hop, sampled_start, sampled, single, indices,
                    indices_offset, indptr, indptr_offset, pair_record, pair_edge, pair_lo, pair_hi):  # fmt: skip
    """One pair per frontier node and edge type sampled into it: the neighbourhood bounds [lo, hi) (csc)
    or the one source id, -1 for none, in lo (single). Independent reads, which the CPU overlaps."""
    pairs = 0
    for record in range(frontier_start, frontier_end):
        t = node_rows[record, 0]
        v = node_rows[record, 1]
        for i in range(sampled_start[hop, t], sampled_start[hop, t + 1]):
            e = sampled[hop, i]
            pair_record[pairs] = record
            pair_edge[pairs] = e
            if single[e]:
                pair_lo[pairs] = indices[indices_offset[e] + v]
            else:
                at = indptr_offset[e] + v
                pair_lo[pairs] = indices_offset[e] + indptr[at]
                pair_hi[pairs] = indices_offset[e] + indptr[at + 1]
            pairs += 1
    return pairs


@numba.njit(cache=True, nogil=True)
def _visible_pairs(pairs, pair_record, pair_edge, pair_lo, pair_hi, node_rows, block_first, hop, seed_times,
                   windows, fanouts, src_type, single, has_time, times, time_offset, type_offset, indices,
                   cut_upper, cut_lower):  # fmt: skip
    """Narrow every pair to its visible neighbours ([lo, hi) for csc; hi = 1 or 0 for single) and return
    (how many neighbours all pairs take, the most one pair takes)."""
    windowed = windows[hop, 0] != NO_WINDOW
    total = 0
    most = 0
    for p in range(pairs):
        e = pair_edge[p]
        st = src_type[e]
        s = node_rows[pair_record[p], 2]
        upper = seed_times[s]
        lower = NO_WINDOW
        if windowed:
            lower = seed_times[s] + windows[hop, 0]
            upper = seed_times[s] + windows[hop, 1]
        if single[e]:
            u = pair_lo[p]
            visible = u >= 0
            if visible and has_time[st]:
                when = times[time_offset[st] + u]
                visible = when <= upper and (lower == NO_WINDOW or when >= lower)
            pair_hi[p] = np.int64(visible)
            total += pair_hi[p]
            most = max(most, pair_hi[p])
            continue
        if has_time[st] and pair_hi[p] > pair_lo[p]:
            b = s - block_first
            if cut_upper[b, st] < 0 and (pair_hi[p] - pair_lo[p] <= SMALL or cut_upper[b, st] == NO_CUT):
                if pair_hi[p] - pair_lo[p] > SMALL:  # the seed's first big one: the next finds the cut
                    cut_upper[b, st] = ONE_SEARCHED
                pair_lo[p], pair_hi[p] = visible_range(
                    indices, times, time_offset[st], pair_lo[p], pair_hi[p], upper, lower, True
                )
            else:
                if cut_upper[b, st] < 0:
                    size = type_offset[st + 1] - type_offset[st]
                    cut_upper[b, st] = count_at_most(times, time_offset[st], size, upper)
                    if windowed:
                        cut_lower[b, st] = count_below(times, time_offset[st], size, lower)
                pair_lo[p], pair_hi[p] = visible_by_id(
                    indices, times, time_offset[st], pair_lo[p], pair_hi[p], upper, lower, cut_upper[b, st],
                    cut_lower[b, st],
                )  # fmt: skip
        count = pair_hi[p] - pair_lo[p]
        k = fanouts[hop, e]
        take = count if (k < 0 or count <= k) else k
        if take > 0:
            total += take
            most = max(most, take)
    return total, most


@numba.njit(cache=True, nogil=True)
def _take_pairs(pairs, pair_record, pair_edge, pair_lo, pair_hi, hop, fanouts, src_type, single, type_offset,
                indices, take_last, states, block_first, picked, table, generation, node_rows, nodes, edge_rows,
                edges, node_counts, edge_counts):  # fmt: skip
    """Pick each pair's neighbours, deduplicate them within the seed and append their node and edge rows,
    pair by pair (so in seed order), counting them per (type, hop). Returns the new (nodes, edges)."""
    for p in range(pairs):
        e = pair_edge[p]
        record = pair_record[p]
        s = node_rows[record, 2]
        st = src_type[e]
        k = fanouts[hop, e]
        if single[e]:
            if pair_hi[p] == 0:
                continue
            take = 1
            picked[0] = pair_lo[p]
        else:
            lo, hi = pair_lo[p], pair_hi[p]
            count = hi - lo
            if count <= 0:
                continue
            take = count if (k < 0 or count <= k) else k
            if take == count:
                for j in range(take):
                    picked[j] = indices[lo + j]
            elif take_last:
                for j in range(take):
                    picked[j] = indices[hi - take + j]
            else:
                state = states[s - block_first]
                for chosen, j in enumerate(range(count - take, count)):  # Floyd: take distinct of count
                    state, r = _next_random(state)
                    candidate = np.int64(r % np.uint64(j + 1))
                    for q in range(chosen):
                        if picked[q] == lo + candidate:
                            candidate = j
                            break
                    picked[chosen] = lo + candidate
                states[s - block_first] = state
                for j in range(take):
                    picked[j] = indices[picked[j]]
        base = type_offset[st]
        edge_counts[e, hop] += take
        first_new = nodes
        for j in range(take):
            u = picked[j]
            mark = _lookup(table, generation, base + u, s)
            if mark == 0:
                node_rows[nodes, 0] = st
                node_rows[nodes, 1] = u
                node_rows[nodes, 2] = s
                node_rows[nodes, 3] = hop + 1
                nodes += 1
                mark = nodes
                _insert(table, generation, base + u, s, mark)
            edge_rows[edges, 0] = e
            edge_rows[edges, 1] = mark - 1
            edge_rows[edges, 2] = record
            edge_rows[edges, 3] = hop + 1
            edges += 1
        node_counts[st, hop + 1] += nodes - first_new
    return nodes, edges


@numba.njit(cache=True, nogil=True)
def sample_chunk_into(node_rows, edge_rows, node_counts, edge_counts, seed_type, seeds, seed_times, first, last,
                      src_type, dst_type, type_offset, has_time, times, time_offset, indptr, indptr_offset,
                      indices, indices_offset, single, fanouts, windows, take_last, rng_seed):  # fmt: skip
    """Sample seeds ``first .. last - 1`` into buffers the caller keeps from one batch to the next.

    ``node_rows``/``edge_rows``: int64 arrays of shape (n, 4), any n; a buffer too small is replaced by a
    bigger one (the caller sees it in the result). ``node_counts`` (types x (hops + 1)) and
    ``edge_counts`` (edge types x hops) are overwritten with the chunk's counts per (type, hop). Returns
    (node buffer, edge buffer, nodes, edges): the rows are ``node_buffer[:nodes]`` and
    ``edge_buffer[:edges]``, within a (type, hop) and an (edge type, hop) in seed order, as `place` needs.
    """
    hops, edge_types = fanouts.shape
    types = type_offset.shape[0] - 1
    node_counts[:, :] = 0
    edge_counts[:, :] = 0
    node_counts[seed_type, 0] = last - first
    # Per hop and node type: the edge types sampled into it (destination type, fanout not 0), in order.
    sampled_start = np.zeros((hops, types + 1), np.int64)
    sampled = np.empty((hops, max(edge_types, 1)), np.int64)
    widest = np.zeros(hops, np.int64)  # per hop: the most edge types one node is sampled through
    for hop in range(hops):
        n = 0
        for t in range(types):
            sampled_start[hop, t] = n
            for e in range(edge_types):
                if dst_type[e] == t and fanouts[hop, e] != 0:
                    sampled[hop, n] = e
                    n += 1
            widest[hop] = max(widest[hop], n - sampled_start[hop, t])
        sampled_start[hop, types] = n
    nodes = 0
    edges = 0
    picked = np.empty(256, np.int64)
    pair_record = np.empty(1024, np.int64)
    pair_edge = np.empty(1024, np.int64)
    pair_lo = np.empty(1024, np.int64)
    pair_hi = np.empty(1024, np.int64)
    # Dedup within a seed: one open-addressing table per block keyed by (node, seed), which stays in cache;
    # a slot is in use iff its stamp equals the block's generation (no clearing between blocks).
    capacity = 1024  # a power of two, at least 2 * BLOCK
    table = np.zeros((capacity, 4), np.int64)
    states = np.empty(BLOCK, np.uint64)
    # Per seed of the block and temporal node type: how many of its nodes lie at or before the hop's upper
    # bound (cut_upper) and before its lower one (cut_lower), found when first needed (-1: not yet).
    cut_upper = np.empty((BLOCK, types), np.int64)
    cut_lower = np.empty((BLOCK, types), np.int64)
    for generation, block_first in enumerate(range(first, last, BLOCK), 1):
        block_last = min(block_first + BLOCK, last)
        block_first_record = nodes
        if nodes + BLOCK > node_rows.shape[0]:
            node_rows = _grow_rows(node_rows, nodes + BLOCK, nodes)
        for s in range(block_first, block_last):
            states[s - block_first] = rng_seed ^ (np.uint64(s) * np.uint64(0xD1B54A32D192ED03))
            node_rows[nodes, 0] = seed_type
            node_rows[nodes, 1] = seeds[s]
            node_rows[nodes, 2] = s
            node_rows[nodes, 3] = 0
            _insert(table, generation, type_offset[seed_type] + seeds[s], s, nodes + 1)
            nodes += 1
        frontier_start, frontier_end = block_first_record, nodes
        for hop in range(hops):
            most_pairs = (frontier_end - frontier_start) * widest[hop]
            if most_pairs > pair_record.shape[0]:
                pair_record = _bigger(pair_record, most_pairs)
                pair_edge = _bigger(pair_edge, most_pairs)
                pair_lo = _bigger(pair_lo, most_pairs)
                pair_hi = _bigger(pair_hi, most_pairs)
            pairs = _frontier_pairs(
                node_rows, frontier_start, frontier_end, hop, sampled_start, sampled, single, indices,
                indices_offset, indptr, indptr_offset, pair_record, pair_edge, pair_lo, pair_hi,
            )  # fmt: skip
            if pairs == 0:
                break
            if hop == 0 or windows[hop, 0] != NO_WINDOW or windows[hop - 1, 0] != NO_WINDOW:
                cut_upper[:, :] = NO_CUT  # cuts hold for every hop until the window changes
            total, most = _visible_pairs(
                pairs, pair_record, pair_edge, pair_lo, pair_hi, node_rows, block_first, hop, seed_times, windows,
                fanouts, src_type, single, has_time, times, time_offset, type_offset, indices, cut_upper, cut_lower,
            )  # fmt: skip
            if most > picked.shape[0]:
                picked = np.empty(2 * most, np.int64)
            if nodes + total > node_rows.shape[0]:
                node_rows = _grow_rows(node_rows, nodes + total, nodes)
            if edges + total > edge_rows.shape[0]:
                edge_rows = _grow_rows(edge_rows, edges + total, edges)
            if 2 * (nodes - block_first_record + total) > capacity:
                while 2 * (nodes - block_first_record + total) > capacity:
                    capacity *= 4
                table = _rehash(node_rows, type_offset, block_first_record, nodes, capacity, generation)
            nodes, edges = _take_pairs(
                pairs, pair_record, pair_edge, pair_lo, pair_hi, hop, fanouts, src_type, single, type_offset,
                indices, take_last, states, block_first, picked, table, generation, node_rows, nodes, edge_rows,
                edges, node_counts, edge_counts,
            )  # fmt: skip
            frontier_start, frontier_end = frontier_end, nodes
    return node_rows, edge_rows, nodes, edges
