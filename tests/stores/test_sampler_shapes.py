"""The sampler on small versions of the benchmark's power-law users/items/events graphs: equal to the
brute-force reference and to relationallib (both time views, uniform and activity-weighted seeds, 2 and 3
hops), and its compiled entry points equal to one another, also where node ids are not in time order."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.sampler_graphs import build_power_law_store, power_law_graph, power_law_seeds
from stores.graph_store import open_graph_store
from stores.sampler import SamplerConfig, TemporalSampler
from stores.sampler_batch import row_dtype, sample_batch, sample_batch_parallel
from stores.sampler_kernels import sample_chunk_into
from stores.sampler_search import NO_WINDOW
from tests.support.sampler_reference import per_seed_view, reference_last

ROWS = row_dtype(0)  # the sampler's row type on every graph here (int32)

WORKLOADS = [(15, 10), (128, 64), (15, 10, 5)]
SEEDS = 40  # more than one block of seeds (16) in every chunk


@pytest.fixture(scope="module")
def power_law():
    """300 users, 40 items, 6,000 events: items average 150 events (up to ~1,000), so neighbourhoods are
    searched both on their times and on their ids."""
    return power_law_graph(300, 40, 6_000, seed=3)


@pytest.fixture(scope="module", params=["events", "all"])
def store(request, power_law, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"power-law-{request.param}")
    build_power_law_store(root, power_law, request.param)
    return open_graph_store(root)


@pytest.fixture(scope="module", params=["uniform", "activity"])
def seeds(request, power_law):
    users, times = power_law_seeds(power_law, request.param, 1, SEEDS, seed=5)
    return users[0], times[0]


def test_events_follow_their_user_and_item(power_law):
    assert np.all(power_law.event_time >= power_law.user_created[power_law.event_user])
    assert np.all(power_law.event_time >= power_law.item_created[power_law.event_item])
    assert np.all(np.diff(power_law.event_time) >= 0) and np.all(np.diff(power_law.user_created) >= 0)
    degrees = np.bincount(power_law.event_item, minlength=power_law.items)
    assert degrees.max() > 64  # some neighbourhoods are searched on their ids


@pytest.mark.parametrize("fanouts", WORKLOADS, ids=str)
def test_equals_brute_force_and_relationallib(store, seeds, fanouts):
    from benchmarks.bench_sampler import relationallib_plan, relationallib_sampler, relationallib_view

    users, times = seeds
    config = SamplerConfig(fanouts, "last")
    view = per_seed_view(TemporalSampler(store, config, threads=2).sample("users", users, times), len(users))
    assert view == per_seed_view(
        TemporalSampler(store, config, threads=1).sample("users", users, times), len(users)
    )
    assert view == reference_last(store, "users", users, times, list(fanouts))
    theirs, _keep = relationallib_sampler(store)
    result = theirs.sample(relationallib_plan(store, fanouts), {}, "users", users, times)
    assert view == relationallib_view(result, sorted(store.edge_types), len(users))


def kernel_arguments(graph, seeds, times, fanouts, strategy="last", windows=None, rng_seed=0):
    """(seed type, seeds, seed times, first, last) and the kernels' arguments after them, as the sampler
    builds them."""
    node_types, edge_types = sorted(graph.node_counts), sorted(graph.edge_types)
    index = {name: i for i, name in enumerate(node_types)}
    counts = [graph.node_counts[t] for t in node_types]
    metas = [graph.manifest["edge_types"]["__".join(e)] for e in edge_types]
    window_matrix = np.full((len(fanouts), 2), NO_WINDOW, np.int64)
    for hop, window in enumerate(windows or ()):
        if window is not None:
            window_matrix[hop] = (window[0], min(window[1], 0))
    head = (index["users"], np.asarray(seeds, np.int64), np.asarray(times, np.int64), 0, len(seeds))
    return head, [
        np.array([index[e[0]] for e in edge_types], np.int64),
        np.array([index[e[2]] for e in edge_types], np.int64),
        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        np.array([t in graph.node_times for t in node_types], np.bool_),
        np.asarray(graph.times),
        np.array([graph.manifest["node_types"][t]["time_offset"] for t in node_types], np.int64),
        np.asarray(graph.indptr),
        np.array([m["indptr_offset"] for m in metas], np.int64),
        np.asarray(graph.indices),
        np.array([m["indices_offset"] for m in metas], np.int64),
        np.array([m["layout"] == "single" for m in metas], np.bool_),
        np.tile(np.array(fanouts, np.int64)[:, None], (1, len(edge_types))),
        window_matrix,
        strategy == "last",
        np.uint64(rng_seed),
    ]


def chunk_rows(head, rest):
    """One chunk's node and edge rows, sampled into empty buffers."""
    hops, edge_types = rest[11].shape
    counts = (np.empty((len(rest[2]) - 1, hops + 1), np.int64), np.empty((edge_types, hops), np.int64))
    empty = np.empty((0, 4), ROWS)
    node_rows, edge_rows, nodes, edges = sample_chunk_into(empty, empty, *counts, *head, *rest)
    return node_rows[:nodes], edge_rows[:edges]


@pytest.mark.parametrize("strategy", ["last", "uniform"])
def test_serial_and_parallel_batches_agree(store, seeds, strategy):
    """sample_batch (one chunk, this thread) == sample_batch_parallel over 1, 2 and 3 chunks, with windows
    too; row buffers too small to start with grow inside the call (the batch resampled, the same), and the
    grown ones give the same batch again."""
    users, times = seeds
    for fanouts, windows in [((15, 10, 5), None), ((-1, 3), ((-30 * 86400, 0), None)), ((4, 0, 2), None)]:
        head, rest = kernel_arguments(store, users, times, fanouts, strategy, windows, rng_seed=11)
        empty = np.empty((0, 4), ROWS)
        batch = (head[0], store.node_counts["users"], np.empty(0, np.int64), *head[1:3], *rest)
        bad_seed, _, _, *expected = sample_batch(empty, empty, *batch)
        assert bad_seed == -1 and expected[0].size > len(users)  # something was sampled
        for chunks in (1, 2, 3):
            small = np.empty((chunks, 8, 4), ROWS)
            bad_seed, node_buffers, edge_buffers, *got = sample_batch_parallel(
                small, small.copy(), chunks, *batch
            )
            assert bad_seed == -1 and node_buffers.shape[1] > 8 and edge_buffers.shape[1] > 8
            assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))
            _, again_nodes, again_edges, *again = sample_batch_parallel(
                node_buffers, edge_buffers, chunks, *batch
            )
            assert again_nodes is node_buffers and again_edges is edge_buffers  # big enough: kept
            assert all(np.array_equal(a, b) for a, b in zip(expected, again, strict=True))


def test_int64_rows_for_graphs_beyond_int32_ids(store, seeds):
    """Graphs of 2^31 nodes or more sample into int64 rows: the same batch as int32 rows, both kernels."""
    assert row_dtype(2**31 - 1) is np.int32 and row_dtype(2**31) is np.int64
    users, times = seeds
    head, rest = kernel_arguments(store, users, times, (15, 10))
    batch = (head[0], store.node_counts["users"], np.empty(0, np.int64), *head[1:3], *rest)
    narrow, wide = np.empty((0, 4), np.int32), np.empty((0, 4), np.int64)
    expected = sample_batch(narrow, narrow, *batch)[3:]
    assert all(
        np.array_equal(a, b) for a, b in zip(expected, sample_batch(wide, wide, *batch)[3:], strict=True)
    )
    parallel = sample_batch_parallel(wide[None], wide[None], 2, *batch)
    assert parallel[1].dtype == np.int64
    assert all(np.array_equal(a, b) for a, b in zip(expected, parallel[3:], strict=True))


def test_kernels_refuse_seeds_out_of_range(store, seeds):
    """A seed id outside [0, count) is reported by its position, before anything is read with it; a rank
    (caller id -> store id) maps the seeds inside the call."""
    users, times = seeds
    head, rest = kernel_arguments(store, users, times, (15, 10))
    count = store.node_counts["users"]
    empty = np.empty((0, 4), ROWS)
    for bad in (-1, count):
        wrong = np.array(users, np.int64)
        wrong[5] = bad
        for sample in (
            lambda batch: sample_batch(empty, empty, *batch),
            lambda batch: sample_batch_parallel(empty[None], empty[None], 2, *batch),
        ):
            bad_seed, _, _, node_id, _, row, _, layout = sample(
                (head[0], count, np.empty(0, np.int64), wrong, head[2], *rest)
            )
            assert bad_seed == 5 and node_id.size == 0 and row.size == 0 and not layout.any()
    reverse = np.arange(count)[::-1].copy()  # caller id i is store id count - 1 - i
    mapped = sample_batch(empty, empty, head[0], count, reverse, count - 1 - head[1], head[2], *rest)
    direct = sample_batch(empty, empty, head[0], count, np.empty(0, np.int64), head[1], head[2], *rest)
    assert all(np.array_equal(a, b) for a, b in zip(mapped[3:], direct[3:], strict=True))


def test_ids_out_of_time_order(store, seeds):
    """Relabel the events so that their ids no longer follow time order (neighbourhoods still sorted by
    time): the searches on ids must notice and fall back to the times, giving the relabelled sample."""
    users, times = seeds
    events = store.node_counts["events"]
    relabel = np.random.default_rng(0).permutation(events)  # old event id -> new event id
    node_types, edge_types = sorted(store.node_counts), sorted(store.edge_types)
    head, rest = kernel_arguments(store, users, times, (15, 10, 5))
    expected_nodes, expected_edges = chunk_rows(head, rest)
    time_offset = store.manifest["node_types"]["events"]["time_offset"]
    new_times = rest[4].copy()
    new_times[time_offset + relabel] = rest[4][time_offset : time_offset + events]
    new_indices = rest[8].copy()
    for e, edge_type in enumerate(edge_types):
        meta = store.manifest["edge_types"]["__".join(edge_type)]
        start = meta["indices_offset"]
        if edge_type[0] == "events":  # sources are events: relabel the ids
            new_indices[start : start + meta["edges"]] = relabel[rest[8][start : start + meta["edges"]]]
        elif edge_type[2] == "events":  # one source per event, found at the event's id: move it
            new_indices[start + relabel] = rest[8][start : start + events]
        assert rest[10][e] == (edge_type[2] == "events")
    nodes, edges = chunk_rows(head, [*rest[:4], new_times, *rest[5:8], new_indices, *rest[9:]])
    is_event = expected_nodes[:, 0] == node_types.index("events")
    expected_nodes = expected_nodes.copy()
    expected_nodes[is_event, 1] = relabel[expected_nodes[is_event, 1]]
    assert np.array_equal(nodes, expected_nodes) and np.array_equal(edges, expected_edges)
