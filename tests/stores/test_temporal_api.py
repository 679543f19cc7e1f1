"""The standalone sampling API (`stores.temporal`): graphs built in memory from ids in any order, against
the time-ordered pipeline store and the brute-force reference; saved vs in-memory; fanouts per call."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stores.graph_store import EdgeList, GraphStoreError, build_graph_store, open_graph_store
from stores.sampler import SampledSubgraph, SamplerConfig, TemporalSampler, default_threads
from stores.temporal import build_graph
from tests.conftest import REPO_ROOT
from tests.support.sampler_reference import per_seed_view, reference_last
from tests.support.sampler_strategies import GRAPH_SIZES, fanouts, seed_batches

USER, ITEM = ("events", "user", "users"), ("events", "item", "items")


@dataclass
class CallerGraph:
    """A random users/items/events graph in caller ids (times out of order, with ties) and the same graph
    relabelled into time order (store id = position when sorted by (time, caller id))."""

    counts: dict
    times: dict  # node type -> times per caller id
    edges: dict  # edge type -> (src, dst) caller ids
    rank: dict  # node type -> caller id -> time-ordered id (identity for static types)

    def in_memory(self):
        return build_graph(self.counts, self.edges, self.times, add_reverse=True)

    def time_ordered(self, root):
        """The same graph through the pipeline's path: ids already in time order, written to disk."""
        times = {name: np.sort(values, kind="stable") for name, values in self.times.items()}
        edges = [
            EdgeList(a, rel, b, self.rank[a][src], self.rank[b][dst])
            for (a, rel, b), (src, dst) in self.edges.items()
        ]
        build_graph_store(root, self.counts, times, edges)
        return open_graph_store(root)

    def to_time_order(self, out: SampledSubgraph) -> SampledSubgraph:
        """A sample in caller ids with its node ids relabelled into the time-ordered graph's ids."""
        node = {name: self.rank[name][ids] for name, ids in out.node.items()}
        return SampledSubgraph(
            node, out.batch, out.num_sampled_nodes, out.row, out.col, out.num_sampled_edges
        )


def caller_graph(seed: int, users: int, items: int, events: int, user_times: bool) -> CallerGraph:
    rng = np.random.default_rng(seed)
    counts = {"users": users, "items": items, "events": events}
    times = {"events": rng.integers(0, 50, events)}
    if user_times:
        times["users"] = rng.integers(0, 50, users)
    edges = {
        USER: (rng.permutation(events), rng.integers(0, users, events)),
        ITEM: (np.arange(events), rng.integers(0, items, events)),
    }
    rank = {name: np.arange(count) for name, count in counts.items()}
    for name, values in times.items():
        rank[name] = np.empty(len(values), np.int64)
        rank[name][np.argsort(values, kind="stable")] = np.arange(len(values))
    return CallerGraph(counts, times, edges, rank)


graphs = st.builds(caller_graph, *GRAPH_SIZES)


@settings(max_examples=60)
@given(graphs, fanouts, st.data(), st.integers(0, 1000))
def test_ids_in_any_order_sample_as_the_time_ordered_store(graph, hop_fanouts, data, rng_seed):
    """Caller ids in, caller ids out: relabelled, the same samples as the time-ordered pipeline store, and
    `last` equal to the brute-force reference there."""
    seeds, times = data.draw(seed_batches(graph.counts["users"]))
    ours = TemporalSampler(graph.in_memory(), threads=2)
    with tempfile.TemporaryDirectory() as root:
        ordered = graph.time_ordered(root)
        ordered_seeds = graph.rank["users"][seeds]
        expected = reference_last(ordered, "users", ordered_seeds, times, hop_fanouts)
        last = ours.sample("users", seeds, times, fanouts=hop_fanouts, strategy="last")
        assert per_seed_view(graph.to_time_order(last), len(seeds)) == expected
        config = SamplerConfig(tuple(hop_fanouts), "uniform")
        uniform = ours.sample("users", seeds, times, rng_seed, fanouts=hop_fanouts, strategy="uniform")
        reference = TemporalSampler(ordered, config, threads=1).sample(
            "users", ordered_seeds, times, rng_seed
        )
        assert per_seed_view(graph.to_time_order(uniform), len(seeds)) == per_seed_view(reference, len(seeds))
        for name, ids in uniform.node.items():  # the caller's times hold for the caller's ids
            if name in graph.times:
                hop0 = uniform.num_sampled_nodes[name][0]
                assert np.all(graph.times[name][ids[hop0:]] <= times[uniform.batch[name][hop0:]])


def same_sample(first: SampledSubgraph, second: SampledSubgraph) -> bool:
    fields = ("node", "batch", "row", "col")
    arrays_equal = all(
        getattr(first, f).keys() == getattr(second, f).keys()
        and all(np.array_equal(getattr(first, f)[k], getattr(second, f)[k]) for k in getattr(first, f))
        for f in fields
    )
    return (
        arrays_equal
        and first.num_sampled_nodes == second.num_sampled_nodes
        and first.num_sampled_edges == second.num_sampled_edges
    )


@settings(max_examples=30)
@given(graphs, fanouts, st.data(), st.sampled_from(["uniform", "last"]))
def test_in_memory_and_saved_stores_sample_identically(graph, hop_fanouts, data, strategy):
    seeds, times = data.draw(seed_batches(graph.counts["users"]))
    built = graph.in_memory()
    with tempfile.TemporaryDirectory() as root:
        path = built.save(root)
        opened = open_graph_store(root)
        assert opened.path == path and isinstance(opened.indices, np.memmap)
        assert sorted(opened.order) == sorted(built.order) and built.path is None
        for name in built.order:
            assert np.array_equal(opened.order[name], built.order[name])
            assert np.array_equal(opened.rank[name], built.rank[name])
        config = SamplerConfig(tuple(hop_fanouts), strategy)
        for rng_seed in (0, 7):
            in_memory = TemporalSampler(built, config, threads=2).sample("users", seeds, times, rng_seed)
            saved = TemporalSampler(opened, config, threads=1).sample("users", seeds, times, rng_seed)
            assert same_sample(in_memory, saved)
        assert built.save(root) == path  # same content, same version


@settings(max_examples=40)
@given(graphs, fanouts, st.data(), st.sampled_from(["uniform", "last"]), st.integers(0, 1000))
def test_fanouts_and_strategy_per_call_equal_a_sampler_built_with_them(
    graph, hop_fanouts, data, strategy, rng_seed
):
    seeds, times = data.draw(seed_batches(graph.counts["users"]))
    built = graph.in_memory()
    windows = data.draw(st.sampled_from([None, tuple((-10, 0) for _ in hop_fanouts)]))
    configured = TemporalSampler(built, SamplerConfig(tuple(hop_fanouts), strategy, windows), threads=2)
    expected = configured.sample("users", seeds, times, rng_seed)
    unconfigured = TemporalSampler(built, threads=2).sample(
        "users", seeds, times, rng_seed, fanouts=hop_fanouts, strategy=strategy, windows=windows
    )
    assert same_sample(unconfigured, expected)
    other = TemporalSampler(built, SamplerConfig((1, 1, 1, 1), "uniform", ((-1, 0),) * 4), threads=1)
    overridden = other.sample(
        "users", seeds, times, rng_seed, fanouts=hop_fanouts, strategy=strategy, windows=windows
    )
    assert same_sample(overridden, expected)
    assert same_sample(
        configured.sample("users", seeds, times, rng_seed), expected
    )  # the config is unchanged


def test_every_node_and_edge_type_is_in_the_result():
    graph = caller_graph(5, 4, 3, 30, user_times=True)
    built = graph.in_memory()
    sampler = TemporalSampler(built, SamplerConfig((2, 2), "last"))
    out = sampler.sample("users", np.array([0, 1]), np.array([-100, -100]))  # before every event
    assert set(out.node) == set(out.batch) == set(out.num_sampled_nodes) == {"users", "items", "events"}
    assert set(out.row) == set(out.col) == set(out.num_sampled_edges) == set(built.edge_types)
    for name in ("items", "events"):
        assert out.node[name].dtype == np.int64 and len(out.node[name]) == len(out.batch[name]) == 0
        assert out.num_sampled_nodes[name] == [0, 0, 0]
    for edge_type in built.edge_types:
        assert len(out.row[edge_type]) == len(out.col[edge_type]) == 0 and out.num_sampled_edges[
            edge_type
        ] == [0, 0]
    empty = sampler.sample("users", np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert all(len(ids) == 0 for ids in empty.node.values()) and set(empty.row) == set(built.edge_types)


@pytest.mark.parametrize("threads", [1, 2])
def test_seed_ids_out_of_range_are_refused_by_position(threads):
    """Checked inside the compiled call, before any id is mapped or read: the position and the id named; a
    good batch afterwards samples as a fresh sampler does."""
    graph = caller_graph(5, 4, 3, 30, user_times=True).in_memory()  # users out of time order: seeds ranked
    config = SamplerConfig((2, 2), "last")
    sampler = TemporalSampler(graph, config, threads=threads)
    for bad in (-1, 4):
        with pytest.raises(ValueError, match=rf"lie in \[0, 4\) for 'users': seeds\[2\] is {bad}"):
            sampler.sample("users", np.array([0, 3, bad]), np.zeros(3, np.int64))
    seeds, times = np.array([0, 3, 1]), np.full(3, 100)
    good = sampler.sample("users", seeds, times)
    assert sum(len(rows) for rows in good.row.values()) > 0
    fresh = TemporalSampler(graph, config, threads=threads).sample("users", seeds, times)
    assert per_seed_view(good, 3) == per_seed_view(fresh, 3)


def test_ids_already_in_time_order_keep_no_permutation(tmp_path):
    graph = caller_graph(6, 5, 3, 20, user_times=False)
    graph.times["events"] = np.sort(graph.times["events"])
    built = graph.in_memory()
    assert built.order == {} and built.rank == {} and "order" not in built.manifest["node_types"]["events"]
    shuffled = caller_graph(6, 5, 3, 20, user_times=True).in_memory()
    assert sorted(shuffled.order) == ["events", "users"]
    ids = np.arange(20)
    assert np.array_equal(shuffled.to_caller_ids("events", shuffled.to_store_ids("events", ids)), ids)
    assert np.all(np.diff(shuffled.node_times["events"]) >= 0)  # store ids follow time order
    assert np.array_equal(shuffled.times_of("events", ids), caller_graph(6, 5, 3, 20, True).times["events"])
    with pytest.raises(GraphStoreError, match="follow time order"):  # the pipeline's path still refuses them
        build_graph_store(tmp_path, {"events": 3}, {"events": np.array([2, 1, 0])}, [])


def test_bad_inputs_are_refused_with_the_edge_type_named():
    counts = {"users": 2, "events": 3}
    with pytest.raises(ValueError, match=r"destination ids must lie in \[0, 2\)"):
        build_graph(counts, {("events", "by", "users"): (np.arange(3), np.array([0, 1, 2]))})
    with pytest.raises(ValueError, match="3 source ids for 2 destination ids"):
        build_graph(counts, {("events", "by", "users"): (np.arange(3), np.array([0, 1]))})
    with pytest.raises(ValueError, match="1-d integer array"):
        build_graph(counts, {("events", "by", "users"): (np.arange(3.0), np.array([0, 1, 1]))})
    with pytest.raises(ValueError, match="known types"):
        build_graph(counts, {("events", "by", "shops"): (np.arange(3), np.array([0, 1, 1]))})
    with pytest.raises(GraphStoreError, match="2 times for 3 nodes"):
        build_graph(counts, {}, {"events": np.array([1, 2])})
    graph = build_graph(counts, {("events", "by", "users"): (np.arange(3), np.array([0, 1, 1]))})
    with pytest.raises(GraphStoreError, match="no version"):
        _ = graph.version
    with pytest.raises(ValueError, match="give fanouts"):
        TemporalSampler(graph).sample("users", np.array([0]))
    with pytest.raises(ValueError, match="strategy must be"):
        TemporalSampler(graph).sample("users", np.array([0]), fanouts=(1,), strategy="newest")
    with pytest.raises(ValueError, match="threads must be 1 or more"):
        TemporalSampler(graph, threads=0)


def test_default_threads_follow_the_cpus_this_process_may_use():
    expected = min(4, len(__import__("os").sched_getaffinity(0)))
    graph = build_graph({"users": 1}, {})
    assert default_threads() == expected == TemporalSampler(graph).threads
    assert TemporalSampler(graph, threads=3).threads == 3  # the fetcher's explicit count is kept


def test_the_api_imports_no_polars():
    probe = (
        "import stores.temporal, sys\n"
        "heavy = [name for name in ('polars', 'dagster', 'pydantic') if name in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, check=True, capture_output=True)


def test_the_doc_example_runs():
    text = (REPO_ROOT / "docs" / "graph_store.md").read_text()
    blocks = re.findall(
        r"<!-- doc-example: [^>]*test_the_doc_example_runs -->\n```python\n(.*?)```", text, re.S
    )
    assert len(blocks) == 1 and len([line for line in blocks[0].splitlines() if line.strip()]) <= 12
    exec(compile(blocks[0], "docs/graph_store.md", "exec"), {})


def test_the_build_keeps_no_copy_of_the_edges():
    """Peak memory of an in-memory build is the store itself (plus a little): no sorted copy of the edges.
    Measured in a fresh process, after the inputs exist and the kernels are compiled."""
    probe = """
import numpy as np
from stores.temporal import build_graph
def status(field):
    return int([line for line in open("/proc/self/status") if line.startswith(field)][0].split()[1]) * 1024
n, users = 4_000_000, 100_000
rng = np.random.default_rng(0)
edges = {("events", "by", "users"): (rng.permutation(n), rng.integers(0, users, n))}
times = {"events": rng.integers(0, 10**6, n)}
build_graph({"users": 3, "events": 4}, {("events", "by", "users"): (np.array([3, 2, 1, 0]), np.array([0, 1, 2, 2]))},
            {"events": np.array([4, 3, 2, 1])}, add_reverse=True)
before = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")  # the peak (VmHWM) restarts from here
graph = build_graph({"users": users, "events": n}, edges, times, add_reverse=True)
store = sum(a.nbytes for a in (graph.indptr, graph.indices, graph.times, *graph.order.values(), *graph.rank.values()))
print(status("VmHWM") - before, store)
"""
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    grown, store = map(int, done.stdout.split())
    # the permutation's int64 argsort (8 bytes per event) is the one temporary; a sorted copy of the
    # edges would add 16+ bytes per edge
    assert grown < store + 8 * 4_000_000 + 16 * 2**20, (grown, store)
