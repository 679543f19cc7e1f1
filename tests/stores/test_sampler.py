"""The temporal sampler against a brute-force reference, and its invariants, on random small graphs."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stores.sampler import SamplerConfig, TemporalSampler
from tests.support.sampler_reference import per_seed_view, random_store, reference_last, visible
from tests.support.sampler_strategies import GRAPH_SIZES, fanouts, seed_batches

graphs = st.builds(
    lambda seed, users, items, events, user_times: random_store(
        np.random.default_rng(seed), users, items, events, user_times
    ),
    *GRAPH_SIZES,
)


@settings(deadline=None)
@given(graphs, fanouts, st.data())
def test_last_equals_brute_force(graph, hop_fanouts, data):
    seeds, times = data.draw(seed_batches(graph.node_counts["users"]))
    out = TemporalSampler(graph, SamplerConfig(tuple(hop_fanouts), "last"), threads=2).sample(
        "users", seeds, times
    )
    assert per_seed_view(out, len(seeds)) == reference_last(graph, "users", seeds, times, hop_fanouts)


@settings(deadline=None)
@given(graphs, st.data())
def test_windows_equal_brute_force(graph, data):
    seeds, times = data.draw(seed_batches(graph.node_counts["users"]))
    windows = tuple(data.draw(st.sampled_from([None, (-10, 0), (-3, -1), (-20, 5)])) for _ in range(2))
    config = SamplerConfig((-1, 2), "last", windows)
    out = TemporalSampler(graph, config, threads=1).sample("users", seeds, times)
    assert per_seed_view(out, len(seeds)) == reference_last(
        graph, "users", seeds, times, [-1, 2], list(windows)
    )


@settings(deadline=None)
@given(graphs, fanouts, st.data(), st.integers(0, 10_000))
def test_uniform_invariants(graph, hop_fanouts, data, rng_seed):
    seeds, times = data.draw(seed_batches(graph.node_counts["users"]))
    sampler = TemporalSampler(graph, SamplerConfig(tuple(hop_fanouts), "uniform"), threads=2)
    out = sampler.sample("users", seeds, times, rng_seed=rng_seed)
    # Seeds first, in order, one subgraph per seed.
    assert out.node["users"][: len(seeds)].tolist() == seeds.tolist()
    assert out.batch["users"][: len(seeds)].tolist() == list(range(len(seeds)))
    assert out.num_sampled_nodes["users"][0] == len(seeds)
    # Same rng seed, any number of threads: the same sample.
    again = TemporalSampler(graph, SamplerConfig(tuple(hop_fanouts), "uniform"), threads=1).sample(
        "users", seeds, times, rng_seed=rng_seed
    )
    assert per_seed_view(again, len(seeds)) == per_seed_view(out, len(seeds))
    view = per_seed_view(out, len(seeds))
    for seed_index, (nodes, edges) in enumerate(view):
        seed_time = times[seed_index]
        for node_type, node, _hop in nodes:  # never a node newer than its root seed
            if node_type in graph.node_times and _hop > 0:
                assert graph.node_times[node_type][node] <= seed_time
        assert len(set((t, n) for t, n, _ in nodes)) == len(nodes)  # no node twice within a subgraph
        grouped = {}
        for edge_type, src, dst, hop in edges:
            grouped.setdefault((edge_type, dst, hop), []).append(src)
        for (edge_type, dst, hop), sources in grouped.items():
            allowed = visible(graph, edge_type, dst, seed_time)
            k = hop_fanouts[hop - 1]
            assert len(sources) == (len(allowed) if k < 0 else min(k, len(allowed)))
            assert len(set(sources)) == len(sources) and set(sources) <= set(allowed)


def test_uniform_is_uniform():
    """One user with 10 visible events, k=3, 20,000 draws: each event chosen ~30% of the time (chi-square)."""
    graph = random_store(np.random.default_rng(1), 1, 1, 10, user_times=False)
    sampler = TemporalSampler(graph, SamplerConfig((3,), "uniform"), threads=2)
    seeds = np.zeros(20_000, dtype=np.int64)
    out = sampler.sample("users", seeds, np.full(len(seeds), 100), rng_seed=7)
    counts = np.bincount(out.node["events"], minlength=10)
    expected = len(seeds) * 3 / 10
    chi_square = float(((counts - expected) ** 2 / expected).sum())
    assert chi_square < 27.88  # 99.9% quantile of chi-square with 9 degrees of freedom
    assert counts.sum() == 3 * len(seeds)


def test_per_edge_type_fanouts_and_static_types():
    graph = random_store(np.random.default_rng(3), 4, 3, 60, user_times=False)
    events_of_users = ("events", "user", "users")
    items_of_events = ("items", "rev_item", "events")
    config = SamplerConfig(({events_of_users: 2}, {items_of_events: -1}), "last")
    out = TemporalSampler(graph, config).sample("users", np.arange(4), np.full(4, 49))
    assert set(out.row) == set(graph.edge_types)  # every edge type, empty when nothing was sampled
    sampled = {edge_type for edge_type, rows in out.row.items() if len(rows)}
    assert sampled <= {events_of_users, items_of_events}
    assert out.num_sampled_edges[events_of_users][1] == 0 and out.num_sampled_edges[items_of_events][0] == 0


def test_sampler_keeps_working_in_a_forked_worker():
    """DataLoader workers fork the process, maybe while another thread is sampling (its lock held): the child
    must get its own lock instead of waiting forever on the parent's, and must not start numba's OpenMP
    threads, which the parent started (GNU OpenMP aborts such a child): it samples the same on one thread."""
    import multiprocessing

    graph = random_store(np.random.default_rng(4), 5, 3, 50, user_times=True)
    sampler = TemporalSampler(graph, SamplerConfig((3, 2), "uniform"), threads=2)
    seeds, times = np.arange(5), np.full(5, 60)
    expected = per_seed_view(sampler.sample("users", seeds, times, rng_seed=3), 5)
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)

    def child() -> None:  # runs in the forked process: no pickling of the sampler
        sender.send(per_seed_view(sampler.sample("users", seeds, times, rng_seed=3), len(seeds)))

    worker = context.Process(target=child)
    with sampler._lock:  # as if another thread were inside sample() at fork time
        worker.start()
    try:
        assert receiver.poll(30), "the forked sampler hung"
        assert receiver.recv() == expected
    finally:
        worker.join(10)
        if worker.is_alive():
            worker.kill()
