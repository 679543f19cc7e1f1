"""The expected size of one seed's sampled subgraph (nodes and edges per hop and type), from `DataStats`.

The first step of the trial estimate (`cluster.trial_estimate`): batch buffers, activations and work per
step all scale with it. An upper-leaning model of what `stores.sampler` draws, without sampling.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from cluster.data_stats import DataStats, EdgeStats

__all__ = ["DEGREE_SKEW", "Subgraph", "sampled_subgraph"]

# calibrated on this machine (benchmarks/calibrate_provisioner.py; docs/provisioner.md)
DEGREE_SKEW = 1.25  # seeds and the nodes reached from them have above-mean degree (F1: up to 1.15x)


@dataclass(frozen=True)
class Subgraph:
    """Expected sampled subgraph of one seed: nodes per hop and node type, edges per hop and edge type."""

    nodes: list[dict[str, float]]  # hop 0 = the seed
    edges: list[dict[EdgeStats, float]]  # hop h = edges from hop h+1 nodes into hop h nodes

    @property
    def node_count(self) -> float:
        return sum(sum(hop.values()) for hop in self.nodes)

    @property
    def edge_count(self) -> float:
        return sum(sum(hop.values()) for hop in self.edges)


def sampled_subgraph(stats: DataStats, fanouts: Sequence[int], seed_type: str | None = None) -> Subgraph:
    """Expected size of one seed's sampled subgraph (an upper-leaning estimate).

    Per hop and edge type each frontier node draws min(fanout, DEGREE_SKEW * mean in-degree, max degree)
    sources. Drawing back along the reverse of the edge a node was reached by finds its parent again (an
    edge, no new node); parents looked up through foreign keys of sibling tables count once (the largest
    lookup); a node type never holds more nodes per seed than it has. Other repeats within one seed's
    subgraph (two paths to one node) are counted twice, which errs on the large side (F1: 1.4-1.8x).
    """
    seed_type = seed_type or stats.seed_type
    if seed_type is None:  # unknown entity: the node type with the largest neighbourhood
        candidates = sorted({edge.dst for edge in stats.edges}) or sorted(stats.node_counts)
        subgraphs = [sampled_subgraph(stats, fanouts, name) for name in candidates]
        return max(subgraphs, key=lambda sub: sub.node_count + sub.edge_count)
    nodes: list[dict[str, float]] = [{seed_type: 1.0}]
    edges: list[dict[EdgeStats, float]] = []
    totals: dict[str, float] = defaultdict(float, {seed_type: 1.0})
    frontier: dict[tuple[str, EdgeStats | None], float] = {(seed_type, None): 1.0}
    for fanout in fanouts:
        reached: dict[tuple[str, EdgeStats | None], float] = defaultdict(float)
        hop_edges: dict[EdgeStats, float] = defaultdict(float)
        for (node_type, arrival), count in frontier.items():
            for edge in stats.edges:
                if edge.dst != node_type or not count:
                    continue
                degree = DEGREE_SKEW * edge.mean_degree
                per_node = min(degree, edge.max_degree, float(fanout) if fanout >= 0 else math.inf)
                new = per_node
                if arrival is not None and _reverse(edge, arrival):  # the parent is drawn again
                    new -= min(1.0, per_node / max(degree, 1.0))
                hop_edges[edge] += count * per_node
                reached[(edge.src, edge)] += count * max(new, 0.0)
        by_type: dict[str, float] = defaultdict(float)
        lookups: dict[str, float] = defaultdict(float)
        for (node_type, arrival), count in reached.items():
            if arrival is not None and arrival.max_degree <= 1:
                # a parent looked up through a foreign key: sibling event tables of one entity point at
                # the same parents (a driver's results, standings and qualifying share its races)
                lookups[node_type] = max(lookups[node_type], count)
            else:
                by_type[node_type] += count
        for node_type, count in lookups.items():
            by_type[node_type] += count
        for node_type, count in by_type.items():  # never more of a type per seed than exist
            room = max(stats.node_counts.get(node_type, math.inf) - totals[node_type], 0.0)
            raw = sum(value for key, value in reached.items() if key[0] == node_type)
            by_type[node_type] = min(count, room)
            for key in [key for key in reached if key[0] == node_type]:
                reached[key] *= by_type[node_type] / raw if raw else 0.0
            totals[node_type] += by_type[node_type]
        frontier = dict(reached)
        nodes.append(dict(by_type))
        edges.append(dict(hop_edges))
    return Subgraph(nodes, edges)


def _reverse(edge: EdgeStats, arrival: EdgeStats) -> bool:
    """Whether ``edge`` runs back along ``arrival`` (a foreign key and its ``rev_`` twin)."""
    return (edge.src == arrival.dst and edge.dst == arrival.src
            and (edge.rel == f"rev_{arrival.rel}" or arrival.rel == f"rev_{edge.rel}"))  # fmt: skip
