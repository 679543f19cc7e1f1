"""The graph store: layout, versions, shared memory maps, clear errors on damage, the Dagster asset."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from stores.graph_store import EdgeList, GraphStoreError, build_graph_store, open_graph_store
from stores.temporal import build_graph
from tests.conftest import REPO_ROOT


def small_store(root, events=1000):
    rng = np.random.default_rng(0)
    edges = [EdgeList("events", "user", "users", np.arange(events), rng.integers(0, 50, events), dropped=3)]
    return build_graph_store(root, {"users": 50, "events": events}, {"events": np.arange(events) * 10}, edges)


def test_layout_csc_sorted_by_time_and_int32(tmp_path):
    path, manifest = small_store(tmp_path)
    graph = open_graph_store(tmp_path)
    assert graph.version == manifest["version"] == path.name
    indptr, indices = graph.csc[("events", "user", "users")]
    assert indices.dtype == np.int32 and indptr[-1] == 1000
    for user in range(50):
        neighbourhood = graph.node_times["events"][indices[indptr[user] : indptr[user + 1]]]
        assert np.all(np.diff(neighbourhood) >= 0)
    back_ptr, _back = graph.csc[("users", "rev_user", "events")]
    assert np.all(np.diff(back_ptr) == 1)  # one user per event
    assert manifest["edge_types"]["users__rev_user__events"]["layout"] == "single"
    assert manifest["edge_types"]["events__user__users"]["layout"] == "csc"
    assert manifest["edge_types"]["events__user__users"]["dropped_rows"] == 3
    assert manifest["bytes_per_edge"] <= 8.2


def test_same_content_same_version_and_pointer(tmp_path):
    first, _ = small_store(tmp_path)
    second, _ = small_store(tmp_path)
    assert first == second and (tmp_path / "CURRENT").read_text() == first.name
    other, _ = small_store(tmp_path, events=999)
    assert other != first and open_graph_store(tmp_path).version == other.name
    assert open_graph_store(tmp_path, first.name).version == first.name


def test_pipeline_stores_keep_their_version_names(tmp_path):
    """The building passes moved (stores.graph_build) without changing a byte: a version name computed
    before the move still names the same content, so caches keyed by graph version stay valid."""
    path, manifest = small_store(tmp_path)
    assert path.name == "8452afcb4dcc6ecb5aea" and "order" not in manifest["node_types"]["events"]
    assert open_graph_store(tmp_path).order == {}  # nothing to translate on the pipeline's path


def test_a_graph_built_in_memory_saves_as_a_version(tmp_path):
    rng = np.random.default_rng(0)
    src, dst, times = np.arange(1000), rng.integers(0, 50, 1000), rng.permutation(1000) * 10
    graph = build_graph(
        {"users": 50, "events": 1000}, {("events", "user", "users"): (src, dst)}, {"events": times}
    )
    path = graph.save(tmp_path)
    opened = open_graph_store(tmp_path)
    assert opened.version == path.name and (path / "nodes" / "events.order.npy").is_file()
    for name in ("indptr", "indices", "times"):
        assert np.array_equal(getattr(opened, name), getattr(graph, name))
    assert opened.manifest["edge_types"] == graph.manifest["edge_types"]
    assert np.array_equal(opened.times_of("events", np.arange(1000)), times)
    indptr, indices = opened.csc[("events", "user", "users")]
    for user in range(50):  # neighbourhoods by time, read through the permutation
        assert np.all(np.diff(opened.node_times["events"][indices[indptr[user] : indptr[user + 1]]]) >= 0)
        caller_ids = opened.to_caller_ids("events", indices[indptr[user] : indptr[user + 1]])
        assert sorted(caller_ids.tolist()) == np.flatnonzero(dst == user).tolist()


def test_damaged_or_missing_store_gives_clear_errors(tmp_path):
    path, manifest = small_store(tmp_path)
    with pytest.raises(GraphStoreError, match="version 'nope' does not exist"):
        open_graph_store(tmp_path, "nope")
    manifest_path = path / "manifest.json"
    changed = {**manifest, "format_version": 99}
    manifest_path.write_text(json.dumps(changed))
    with pytest.raises(GraphStoreError, match="expected format 1"):
        open_graph_store(tmp_path)
    manifest_path.write_text(json.dumps(manifest))
    indices = path / "edges" / "indices.npy"
    indices.write_bytes(indices.read_bytes()[:-100])
    with pytest.raises(GraphStoreError, match="truncated or corrupt"):
        open_graph_store(tmp_path)
    with pytest.raises(GraphStoreError, match="no graph store under"):
        open_graph_store(tmp_path / "elsewhere")


def test_two_processes_share_one_copy(tmp_path):
    """Map a store in two processes and read all of what the sampler reads: no private copy in either."""
    events = 8_000_000
    edges = [
        EdgeList(
            "events", "user", "users", np.arange(events), np.random.default_rng(0).integers(0, 1000, events)
        )
    ]
    build_graph_store(tmp_path, {"users": 1000, "events": events}, {}, edges)
    probe = (
        "import sys, numpy as np\n"
        "from stores.graph_store import open_graph_store\n"
        "def anon():\n"
        "    return int([l for l in open('/proc/self/status') if l.startswith('RssAnon')][0].split()[1])\n"
        "before = anon()\n"
        "g = open_graph_store(sys.argv[1])\n"
        "touched = sum(int(np.add.reduce(a, dtype=np.int64)) for a in (g.indptr, g.indices, g.times))\n"
        "print(anon() - before)\n"
    )
    sizes = []
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True)  # fmt: skip
        sizes.append(int(done.stdout.strip().splitlines()[-1]))
    store_kib = sum(p.stat().st_size for p in tmp_path.rglob("*.npy")) / 1024
    assert all(size < 0.6 * store_kib for size in sizes), (sizes, store_kib)
