"""The compiled core of the temporal sampler (numba, releases the GIL): sampling a chunk of seeds and
writing its nodes and edges to their final positions. `stores.sampler` is the Python API around it.

Records: nodes as rows (type, id, seed, hop), edges as rows (edge type, src record, dst record, hop).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["NO_WINDOW", "chunk_counts", "place", "sample_chunk"]

NO_WINDOW = np.iinfo(np.int64).min


@numba.njit(cache=True, nogil=True)
def chunk_counts(node_rows, edge_rows, types, edge_types, hops):
    node_counts = np.zeros((types, hops + 1), np.int64)
    for record in range(node_rows.shape[0]):
        node_counts[node_rows[record, 0], node_rows[record, 3]] += 1
    edge_counts = np.zeros((edge_types, hops), np.int64)
    for edge in range(edge_rows.shape[0]):
        edge_counts[edge_rows[edge, 0], edge_rows[edge, 3] - 1] += 1
    return node_counts, edge_counts


@numba.njit(cache=True, nogil=True)
def place(node_rows, edge_rows, node_base, edge_base, type_start, node_id, node_seed, row, col):
    """Write one chunk's nodes and edges at their final positions; edges get local (per-type) indices."""
    node_cursor = node_base.copy()
    local = np.empty(node_rows.shape[0], np.int64)
    for record in range(node_rows.shape[0]):
        t = node_rows[record, 0]
        position = node_cursor[t, node_rows[record, 3]]
        node_cursor[t, node_rows[record, 3]] += 1
        node_id[position] = node_rows[record, 1]
        node_seed[position] = node_rows[record, 2]
        local[record] = position - type_start[t]
    edge_cursor = edge_base.copy()
    for edge in range(edge_rows.shape[0]):
        e = edge_rows[edge, 0]
        position = edge_cursor[e, edge_rows[edge, 3] - 1]
        edge_cursor[e, edge_rows[edge, 3] - 1] += 1
        row[position] = local[edge_rows[edge, 1]]
        col[position] = local[edge_rows[edge, 2]]


@numba.njit(cache=True, inline="always")
def _next_random(state):
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


@numba.njit(cache=True)
def _grow_rows(buffer, rows):
    bigger = np.empty((max(rows, 2 * buffer.shape[0]), buffer.shape[1]), dtype=buffer.dtype)
    bigger[: buffer.shape[0]] = buffer
    return bigger


@numba.njit(cache=True, inline="always")
def _visible_range(indices, times, time_base, start, end, upper, lower, has_time):
    """[lo, hi) of a time-sorted neighbourhood whose source times lie in [lower, upper]."""
    if not has_time:
        return start, end
    lo, hi = start, end
    while lo < hi:  # first position with time > upper
        mid = (lo + hi) // 2
        if times[time_base + indices[mid]] <= upper:
            lo = mid + 1
        else:
            hi = mid
    stop = lo
    lo = start
    if lower != NO_WINDOW:
        hi = stop
        while lo < hi:  # first position with time >= lower
            mid = (lo + hi) // 2
            if times[time_base + indices[mid]] < lower:
                lo = mid + 1
            else:
                hi = mid
    return lo, stop


@numba.njit(cache=True, nogil=True)
def sample_chunk(seed_type, seeds, seed_times, first, last, src_type, dst_type, type_offset, has_time,
                      times, time_offset, indptr, indptr_offset, indices, indices_offset, single, fanouts, windows,
                      take_last, rng_seed):  # fmt: skip
    """Nodes as rows (type, id, seed, hop) and edges as rows (edge type, src record, dst record, hop)."""
    hops, edge_types = fanouts.shape
    node_rows = np.empty((4096, 4), np.int64)
    edge_rows = np.empty((4096, 4), np.int64)
    picked = np.empty(256, np.int64)
    nodes = 0
    edges = 0
    # Dedup within a seed: a small open-addressing table (node key -> record + 1) that stays in cache;
    # a slot belongs to the current seed iff its stamp equals the seed's generation.
    capacity = 64
    slot_keys = np.empty(capacity, np.int64)
    slot_values = np.empty(capacity, np.int64)
    slot_stamps = np.zeros(capacity, np.int64)
    for s in range(first, last):
        seed_first_record = nodes
        state = rng_seed ^ (np.uint64(s) * np.uint64(0xD1B54A32D192ED03))
        if nodes + 1 > node_rows.shape[0]:
            node_rows = _grow_rows(node_rows, nodes + 1)
        node_rows[nodes, 0] = seed_type
        node_rows[nodes, 1] = seeds[s]
        node_rows[nodes, 2] = s
        node_rows[nodes, 3] = 0
        generation = s - first + 1
        _insert(slot_keys, slot_values, slot_stamps, generation, type_offset[seed_type] + seeds[s], nodes + 1)
        nodes += 1
        in_table = 1
        frontier_start, frontier_end = seed_first_record, nodes
        for hop in range(hops):
            upper = seed_times[s]
            lower = NO_WINDOW
            if windows[hop, 0] != NO_WINDOW:
                lower = seed_times[s] + windows[hop, 0]
                upper = seed_times[s] + windows[hop, 1]
            for record in range(frontier_start, frontier_end):
                t = node_rows[record, 0]
                v = node_rows[record, 1]
                for e in range(edge_types):
                    k = fanouts[hop, e]
                    if dst_type[e] != t or k == 0:
                        continue
                    st = src_type[e]
                    base_ix = indices_offset[e]
                    if single[e]:  # at most one source: no offsets to read
                        lo = base_ix + v
                        hi = lo + 1 if indices[lo] >= 0 else lo
                        if hi > lo and has_time[st]:
                            when = times[time_offset[st] + indices[lo]]
                            if when > upper or (lower != NO_WINDOW and when < lower):
                                hi = lo
                    else:
                        base_ptr = indptr_offset[e] + v
                        lo, hi = _visible_range(
                            indices, times, time_offset[st], base_ix + indptr[base_ptr],
                            base_ix + indptr[base_ptr + 1], upper, lower, has_time[st],
                        )  # fmt: skip
                    count = hi - lo
                    if count <= 0:
                        continue
                    take = count if (k < 0 or count <= k) else k
                    if take > picked.shape[0]:
                        picked = np.empty(2 * take, np.int64)
                    if take == count:
                        for j in range(take):
                            picked[j] = lo + j
                    elif take_last:
                        for j in range(take):
                            picked[j] = hi - take + j
                    else:
                        for chosen, j in enumerate(
                            range(count - take, count)
                        ):  # Floyd: take distinct of count
                            state, r = _next_random(state)
                            candidate = np.int64(r % np.uint64(j + 1))
                            for q in range(chosen):
                                if picked[q] == lo + candidate:
                                    candidate = j
                                    break
                            picked[chosen] = lo + candidate
                    if nodes + take > node_rows.shape[0]:
                        node_rows = _grow_rows(node_rows, nodes + take)
                    if edges + take > edge_rows.shape[0]:
                        edge_rows = _grow_rows(edge_rows, edges + take)
                    base = type_offset[st]
                    for j in range(take):
                        u = np.int64(indices[picked[j]])
                        mark = _lookup(slot_keys, slot_values, slot_stamps, generation, base + u)
                        if mark == 0:
                            node_rows[nodes, 0] = st
                            node_rows[nodes, 1] = u
                            node_rows[nodes, 2] = s
                            node_rows[nodes, 3] = hop + 1
                            nodes += 1
                            mark = nodes
                            if 2 * (in_table + 1) > capacity:
                                capacity *= 4
                                slot_keys, slot_values, slot_stamps = _rehash(
                                    node_rows, type_offset, seed_first_record, nodes - 1, capacity, generation
                                )
                            _insert(slot_keys, slot_values, slot_stamps, generation, base + u, mark)
                            in_table += 1
                        edge_rows[edges, 0] = e
                        edge_rows[edges, 1] = mark - 1
                        edge_rows[edges, 2] = record
                        edge_rows[edges, 3] = hop + 1
                        edges += 1
            frontier_start, frontier_end = frontier_end, nodes
    return node_rows[:nodes], edge_rows[:edges]


@numba.njit(cache=True, inline="always")
def _slot(key, mask):
    return np.int64((np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)) & mask


@numba.njit(cache=True, inline="always")
def _lookup(keys, values, stamps, generation, key):
    mask = keys.shape[0] - 1
    slot = _slot(key, mask)
    while stamps[slot] == generation:
        if keys[slot] == key:
            return values[slot]
        slot = (slot + 1) & mask
    return 0


@numba.njit(cache=True, inline="always")
def _insert(keys, values, stamps, generation, key, value):
    mask = keys.shape[0] - 1
    slot = _slot(key, mask)
    while stamps[slot] == generation:
        slot = (slot + 1) & mask
    keys[slot] = key
    values[slot] = value
    stamps[slot] = generation


@numba.njit(cache=True)
def _rehash(node_rows, type_offset, first_record, end_record, capacity, generation):
    """A bigger table holding this seed's records so far (records first_record .. end_record-1)."""
    keys = np.empty(capacity, np.int64)
    values = np.empty(capacity, np.int64)
    stamps = np.zeros(capacity, np.int64)
    for record in range(first_record, end_record):
        _insert(
            keys,
            values,
            stamps,
            generation,
            type_offset[node_rows[record, 0]] + node_rows[record, 1],
            record + 1,
        )
    return keys, values, stamps
