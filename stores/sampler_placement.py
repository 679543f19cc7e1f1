"""Where a sampled batch's rows go: each chunk's nodes and edges written to their final positions (per
type, hop-major, then seed order), edges as local per-type indices. Part of the sampler's compiled core."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["place", "placement"]


@numba.njit(cache=True, nogil=True)
def placement(node_counts, edge_counts):
    """Where each chunk's runs go in the output: hop-major within each type, then chunk (seed) order.

    ``node_counts`` is chunks x types x (hops + 1) and ``edge_counts`` chunks x edge types x hops (the
    stacked `chunk_counts`). Returns (node_base, edge_base) shaped like them (the first output position of
    each chunk's (type, hop) and (edge type, hop) run), (type_start, edge_start) (each type's first
    position, then the total) and (node_totals, edge_totals) (the counts summed over chunks).
    """
    node_base, type_start, node_totals = _runs(node_counts)
    edge_base, edge_start, edge_totals = _runs(edge_counts)
    return node_base, edge_base, type_start, edge_start, node_totals, edge_totals


@numba.njit(cache=True, nogil=True)
def _runs(counts):
    chunks, kinds, hops = counts.shape
    base = np.empty_like(counts)
    start = np.zeros(kinds + 1, np.int64)
    totals = np.zeros((kinds, hops), np.int64)
    position = 0
    for kind in range(kinds):
        start[kind] = position
        for hop in range(hops):
            for chunk in range(chunks):
                base[chunk, kind, hop] = position
                position += counts[chunk, kind, hop]
                totals[kind, hop] += counts[chunk, kind, hop]
    start[kinds] = position
    return base, start, totals


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
