"""A brute-force temporal neighbour sampler in plain Python: the semantics, written as directly as possible."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from stores.graph_store import EdgeList, build_graph_store, open_graph_store


def neighbours(graph, edge_type, node):
    indptr, indices = graph.csc[edge_type]
    return [int(u) for u in indices[int(indptr[node]) : int(indptr[node + 1])]]


def visible(graph, edge_type, node, seed_time, window=None):
    """Neighbours of ``node`` through ``edge_type`` visible to a seed at ``seed_time``, oldest first."""
    source = edge_type[0]
    result = neighbours(graph, edge_type, node)
    if source not in graph.node_times:
        return result
    times = graph.node_times[source]
    upper, lower = seed_time, None
    if window is not None:
        lower, upper = seed_time + window[0], seed_time + min(window[1], 0)
    return [u for u in result if times[u] <= upper and (lower is None or times[u] >= lower)]


def reference_last(graph, seed_type, seeds, seed_times, fanouts, windows=None):
    """Per seed: nodes as (type, id, hop) and edges as (edge_type, src id, dst id, hop), 'last' strategy."""
    edge_types = sorted(graph.edge_types)
    per_seed = []
    for seed, seed_time in zip(seeds, seed_times, strict=True):
        index = {(seed_type, int(seed)): 0}
        nodes = [(seed_type, int(seed), 0)]
        edges = []
        frontier = [(seed_type, int(seed))]
        for hop, fanout in enumerate(fanouts):
            window = windows[hop] if windows else None
            found = []
            for node_type, node in frontier:
                for edge_type in edge_types:
                    k = fanout.get(edge_type, 0) if isinstance(fanout, dict) else fanout
                    if edge_type[2] != node_type or k == 0:
                        continue
                    candidates = visible(graph, edge_type, node, seed_time, window)
                    picked = candidates if k < 0 or len(candidates) <= k else candidates[-k:]
                    for u in picked:
                        key = (edge_type[0], u)
                        if key not in index:
                            index[key] = len(nodes)
                            nodes.append((edge_type[0], u, hop + 1))
                            found.append(key)
                        edges.append((edge_type, u, node, hop + 1))
            frontier = found
        per_seed.append((sorted(nodes), sorted(edges)))
    return per_seed


def per_seed_view(out, num_seeds):
    """Our sampler's output regrouped per seed in the reference's form."""
    nodes = [[] for _ in range(num_seeds)]
    edges = [[] for _ in range(num_seeds)]
    hops = {}
    for node_type, ids in out.node.items():
        counts = out.num_sampled_nodes[node_type]
        hop_of = np.repeat(np.arange(len(counts)), counts)
        hops[node_type] = hop_of
        for position, (node, seed) in enumerate(
            zip(ids.tolist(), out.batch[node_type].tolist(), strict=True)
        ):
            nodes[seed].append((node_type, node, int(hop_of[position])))
    for edge_type, rows in out.row.items():
        counts = out.num_sampled_edges[edge_type]
        hop_of = np.repeat(np.arange(1, len(counts) + 1), counts)
        src_ids, dst_ids = out.node[edge_type[0]][rows], out.node[edge_type[2]][out.col[edge_type]]
        seeds = out.batch[edge_type[2]][out.col[edge_type]]
        for src, dst, seed, hop in zip(
            src_ids.tolist(), dst_ids.tolist(), seeds.tolist(), hop_of.tolist(), strict=True
        ):
            edges[seed].append((edge_type, src, dst, hop))
    return [(sorted(n), sorted(e)) for n, e in zip(nodes, edges, strict=True)]


def random_store(rng: np.random.Generator, users: int, items: int, events: int, user_times: bool) -> object:
    """users/items/events: events point at a user and an item; users optionally temporal; opened from disk."""
    event_times = np.sort(rng.integers(0, 50, events))
    node_times = {"events": event_times}
    if user_times:
        node_times["users"] = np.sort(rng.integers(0, 50, users))
    edges = [
        EdgeList("events", "user", "users", np.arange(events), rng.integers(0, users, events)),
        EdgeList("events", "item", "items", np.arange(events), rng.integers(0, items, events)),
    ]
    root = Path(tempfile.mkdtemp(prefix="graph-store-test-"))
    build_graph_store(root, {"users": users, "items": items, "events": events}, node_times, edges)
    return open_graph_store(root)
