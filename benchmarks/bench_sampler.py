"""Temporal neighbour sampling: our numba sampler against Kumo's C++ sampler (relationallib), same run.

Graphs: F1 (the embedded default) and a synthetic users/items/events graph (default 10 M events, i.e.
40 M directed edges). Same store, same seeds, same seed times, same fanouts, temporal 'last' mode (what
relationallib offers). Outputs are checked equal to relationallib's and to a brute-force reference.
The last line prints our sampled-edges/s over relationallib's on one thread.

    .venv/bin/python benchmarks/bench_sampler.py [--events 25000000]   # 100 M directed edges
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kumo_relational_engine.relationallib import NeighborSampler  # noqa: E402

from relational.graph_tables import ingest_in_memory  # noqa: E402
from relational.spec_loader import load_spec  # noqa: E402
from stores.graph_store import EdgeList, build_graph_store, open_graph_store  # noqa: E402
from stores.sampler import SamplerConfig, TemporalSampler  # noqa: E402
from stores.store_inputs import build_graph_from_tables  # noqa: E402
from tests.support.sampler_reference import per_seed_view, reference_last  # noqa: E402


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def synthetic_store(root: Path, users: int, items: int, events: int) -> tuple[dict, float]:
    rng = np.random.default_rng(0)
    start = 1_600_000_000
    times = np.sort(rng.integers(start, start + 2 * 365 * 86400, events, dtype=np.int64))
    edges = [
        EdgeList(
            "events", "user", "users", np.arange(events, dtype=np.int64), rng.integers(0, users, events)
        ),
        EdgeList(
            "events", "item", "items", np.arange(events, dtype=np.int64), rng.integers(0, items, events)
        ),
    ]
    started = time.perf_counter()
    _, manifest = build_graph_store(
        root, {"users": users, "items": items, "events": events}, {"events": times}, edges
    )
    return manifest, time.perf_counter() - started


def relationallib_sampler(graph) -> tuple[NeighborSampler, list]:
    """The same CSC arrays, as int64 copies (relationallib accepts only int64 and keeps raw pointers)."""
    keep = []
    colptr, row = {}, {}
    for edge_type, (indptr, indices) in graph.csc.items():
        key = "__".join(edge_type)
        colptr[key] = np.ascontiguousarray(indptr, dtype=np.int64)
        row[key] = np.ascontiguousarray(indices, dtype=np.int64)
        keep += [colptr[key], row[key]]
    node_time = {
        name: np.ascontiguousarray(times, dtype=np.int64) for name, times in graph.node_times.items()
    }
    keep += list(node_time.values())
    sampler = NeighborSampler(
        sorted(graph.node_counts), sorted(graph.edge_types), colptr, row, node_time, seed=1
    )
    return sampler, keep


def relationallib_view(result, edge_types, num_seeds):
    """relationallib's output per seed in the reference's form (nodes (type, id, hop), edges with hops)."""
    row_d, col_d, node_d, batch_d, nodes_per_hop, edges_per_hop = result
    nodes = [[] for _ in range(num_seeds)]
    edges = [[] for _ in range(num_seeds)]
    for node_type, ids in node_d.items():
        hops = np.repeat(np.arange(len(nodes_per_hop[node_type])), nodes_per_hop[node_type])
        for node, seed, hop in zip(ids.tolist(), batch_d[node_type].tolist(), hops.tolist(), strict=True):
            nodes[seed].append((node_type, node, hop))
    for edge_type in edge_types:
        key = "__".join(edge_type)
        hops = np.repeat(np.arange(1, len(edges_per_hop[key]) + 1), edges_per_hop[key])
        src = node_d[edge_type[0]][row_d[key]]
        dst = node_d[edge_type[2]][col_d[key]]
        seeds = batch_d[edge_type[2]][col_d[key]]
        for s, d, seed, hop in zip(src.tolist(), dst.tolist(), seeds.tolist(), hops.tolist(), strict=True):
            edges[seed].append((edge_type, s, d, hop))
    return [(sorted(n), sorted(e)) for n, e in zip(nodes, edges, strict=True)]


def measure(
    graph, name: str, seed_type: str, seeds: list, times: list, fanouts: list[int], rounds: int = 3
) -> dict:
    """Sampled edges/s of ours (1 and 2 threads) and relationallib (1 thread): best of interleaved rounds."""
    edge_types = sorted(graph.edge_types)
    config = SamplerConfig(tuple(fanouts), "last")
    ours = {threads: TemporalSampler(graph, config, threads=threads) for threads in (1, 2)}
    theirs, _keep = relationallib_sampler(graph)
    plan = {"__".join(edge_type): np.array(fanouts, dtype=np.int64) for edge_type in edge_types}
    runners = {
        f"ours_{threads}": lambda b, t, sampler=sampler: sum(
            len(r) for r in sampler.sample(seed_type, b, t).row.values()
        )
        for threads, sampler in ours.items()
    }
    runners["relationallib_1"] = lambda b, t: sum(
        len(r) for r in theirs.sample(plan, {}, seed_type, b, t)[0].values()
    )
    for run in runners.values():
        run(seeds[0], times[0])  # compile / warm up
    best = dict.fromkeys(runners, 0.0)
    batches = {label: 0.0 for label in runners}
    for _ in range(rounds):
        for label, run in runners.items():
            started = time.perf_counter()
            edges = sum(run(batch, batch_times) for batch, batch_times in zip(seeds, times, strict=True))
            seconds = time.perf_counter() - started
            if edges / seconds > best[label]:
                best[label], batches[label] = edges / seconds, len(seeds) / seconds
    # Correctness on the first batch: identical to relationallib, and to the brute-force reference.
    view = per_seed_view(ours[2].sample(seed_type, seeds[0], times[0]), len(seeds[0]))
    assert view == relationallib_view(
        theirs.sample(plan, {}, seed_type, seeds[0], times[0]), edge_types, len(seeds[0])
    )
    assert view[:32] == reference_last(graph, seed_type, seeds[0][:32], times[0][:32], fanouts)
    print(
        f"  {name} fanouts {fanouts}: identical to relationallib and to the brute-force reference (best of {rounds})"
    )
    for label in runners:
        print(f"    {label:16s} {batches[label]:8.1f} batches/s  {best[label] / 1e6:7.2f} M sampled edges/s")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    ratios = {}
    with tempfile.TemporaryDirectory() as scratch:
        print("F1 (embedded default)")
        spec = load_spec(ROOT / "kumo_assets" / "examples" / "f1" / "graph.yaml")
        built = ingest_in_memory(spec)
        started = time.perf_counter()
        _, manifest = build_graph_from_tables(
            spec, {n: t.frame for n, t in built.items()}, Path(scratch) / "f1"
        )
        print(f"  build {time.perf_counter() - started:.2f} s, {manifest['edges']:,} directed edges, "
              f"{manifest['bytes_per_edge']:.2f} bytes per directed edge")  # fmt: skip
        f1 = open_graph_store(Path(scratch) / "f1")
        race_times = np.sort(f1.node_times["races"])
        seeds = [rng.integers(0, f1.node_counts["drivers"], args.batch_size) for _ in range(args.batches)]
        times = [rng.choice(race_times[len(race_times) // 2 :], args.batch_size) for _ in range(args.batches)]
        for fanouts in ([15, 10], [128, 64]):
            ratios[("f1", tuple(fanouts))] = measure(f1, "F1", "drivers", seeds, times, fanouts)

        print(f"synthetic: {args.users:,} users, {args.items:,} items, {args.events:,} events")
        manifest, seconds = synthetic_store(Path(scratch) / "synthetic", args.users, args.items, args.events)
        print(f"  build {seconds:.2f} s for {manifest['edges']:,} directed edges: "
              f"{manifest['edges'] / seconds / 1e6:.1f} M edges/s, {manifest['bytes_per_edge']:.2f} bytes per "
              f"directed edge, {manifest['edge_bytes'] / 2**30:.2f} GiB of adjacency")  # fmt: skip
        graph = open_graph_store(Path(scratch) / "synthetic")
        half = int(graph.node_times["events"][len(graph.node_times["events"]) // 2])
        last = int(graph.node_times["events"][-1])
        seeds = [rng.integers(0, args.users, args.batch_size) for _ in range(args.batches)]
        times = [rng.integers(half, last, args.batch_size) for _ in range(args.batches)]
        for fanouts in ([15, 10], [128, 64]):
            ratios[("synthetic", tuple(fanouts))] = measure(
                graph, "synthetic", "users", seeds, times, fanouts
            )
    print(f"peak RSS {peak_rss_gib():.2f} GiB")
    for key, rates in ratios.items():
        print(f"  {key[0]} {list(key[1])}: 2 threads / 1 thread {rates['ours_2'] / rates['ours_1']:.2f}x, "
              f"ours (1 thread) / relationallib {rates['ours_1'] / rates['relationallib_1']:.2f}x")  # fmt: skip
    main_rates = ratios[("synthetic", (15, 10))]
    print(f"ratio ours/relationallib, 1 thread, synthetic [15, 10], sampled edges/s: "
          f"{main_rates['ours_1'] / main_rates['relationallib_1']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
