"""The minibatch fetcher and its shared cache: equal to uncached builds, safe across processes and crashes."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import numpy as np
import pytest
import torch

from stores.atomic import is_temporary
from stores.batch_cache import BatchCache
from stores.feature_store import NodeTable, build_feature_store, open_feature_store
from stores.fetcher import MinibatchFetcher, TrainingSplit
from stores.sampler import SamplerConfig
from tests.support.sampler_reference import random_store


@pytest.fixture
def stores(tmp_path):
    import polars as pl

    graph = random_store(np.random.default_rng(0), 30, 10, 400, user_times=False)
    rng = np.random.default_rng(1)
    tables = {
        "users": NodeTable(pl.DataFrame({"age": rng.normal(size=30)}), {"age": {"stype": "numerical"}}),
        "events": NodeTable(
            pl.DataFrame({"amount": rng.gamma(2.0, size=400)}), {"amount": {"stype": "numerical"}}
        ),
    }
    build_feature_store(tmp_path / "features", tables)
    features = open_feature_store(tmp_path / "features")
    split = TrainingSplit("shop/churn/train@test", "users", np.arange(30).repeat(2), np.full(60, 45),
                          rng.integers(0, 2, 60), np.arange(60) + 45)  # fmt: skip
    return graph, features, split


def fetcher(stores, cache=None, prefetch=2):
    graph, features, _ = stores
    return MinibatchFetcher(graph, features, SamplerConfig((4, 3), "uniform"), batch_size=16, cache=cache,
                            prefetch=prefetch)  # fmt: skip


def test_cached_batches_equal_uncached_builds_byte_for_byte(stores, tmp_path):
    _, _, split = stores
    cached = fetcher(stores, BatchCache(tmp_path / "cache"))
    plain = fetcher(stores)
    for index in range(cached.batches_per_epoch(split)):
        first = cached.payload(split, 7, index)
        again = cached.payload(split, 7, index)
        assert first == again == plain.build(split, 7, index)
    assert cached.cache.stats.misses == 4 and cached.cache.stats.hits == 4
    assert cached.sampler_invocations == 4


def test_epoch_with_prefetch_equals_without_and_has_labels(stores, tmp_path):
    _, features, split = stores
    with_prefetch = list(fetcher(stores, prefetch=3).epoch(split, 5))
    without = list(fetcher(stores, prefetch=0).epoch(split, 5))
    assert len(with_prefetch) == len(without) == 4
    seen = []
    for a, b in zip(with_prefetch, without, strict=True):
        assert torch.equal(a["users"].n_id, b["users"].n_id) and torch.equal(a["users"].y, b["users"].y)
        assert torch.equal(a["events"].numerical, b["events"].numerical)
        source = np.asarray(features.blocks[("events", "numerical")])
        assert torch.equal(a["events"].numerical, torch.from_numpy(source[a["events"].n_id.numpy()]))
        assert torch.equal(a["users"].y, torch.from_numpy(split.labels[a["users"].input_id.numpy()]))
        seen += a["users"].input_id.tolist()
    assert sorted(seen) == list(range(60))  # every seed exactly once per epoch
    assert torch.equal(with_prefetch[0]["users"].seed_time, torch.full((16,), 45))
    for batch in with_prefetch:  # each seed's prediction time rides along with its (earlier) view
        users = batch["users"]
        assert torch.equal(users.anchor_time, torch.from_numpy(split.anchor_times[users.input_id.numpy()]))


def test_corrupt_and_foreign_entries_are_rebuilt_never_used(stores, tmp_path):
    _, _, split = stores
    cache = BatchCache(tmp_path / "cache")
    fetch = fetcher(stores, cache)
    good = fetch.payload(split, 1, 0)
    key = fetch.key(split, 1, 0) + "|shuffle=True"
    path = cache._path(key)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # one flipped bit in the payload
    path.write_bytes(bytes(data))
    assert cache.read(key) is None and cache.stats.rejected == 1
    assert fetch.payload(split, 1, 0) == good  # rebuilt
    other = fetch.payload(split, 1, 1)
    path.write_bytes(
        cache._path(fetch.key(split, 1, 1) + "|shuffle=True").read_bytes()
    )  # another key's entry
    assert cache.read(key) is None and cache.stats.rejected == 2
    assert fetch.payload(split, 1, 0) == good != other


def _slow_writer(directory: str, key: str) -> None:
    """Writes an entry but is killed before its rename (os.replace sleeps)."""
    cache = BatchCache(directory)
    real_replace = os.replace

    def stalled(source, target):
        time.sleep(60)
        real_replace(source, target)

    os.replace = stalled
    cache.get_or_build(key, lambda: b"x" * 1_000_000)


def test_a_writer_killed_mid_write_leaves_no_partial_entry(tmp_path):
    directory = tmp_path / "cache"
    cache = BatchCache(directory, lock_timeout=30)
    writer = multiprocessing.get_context("fork").Process(target=_slow_writer, args=(str(directory), "k"))
    writer.start()
    deadline = time.monotonic() + 60
    while not any(is_temporary(name) for name in os.listdir(directory)):
        assert time.monotonic() < deadline, "the writer never started writing"
        time.sleep(0.05)
    time.sleep(0.2)
    os.kill(writer.pid, signal.SIGKILL)
    writer.join()
    assert cache.read("k") is None  # the half-written file is not an entry
    assert cache.get_or_build("k", lambda: b"rebuilt") == b"rebuilt"  # its stale lock is taken over
    assert cache.read("k") == b"rebuilt"


def test_cache_stays_within_its_bound(tmp_path):
    cache = BatchCache(tmp_path / "cache", max_bytes=50_000)
    for index in range(20):
        cache.write(f"entry-{index}", bytes(10_000))
        time.sleep(0.01)
    sizes = [
        entry.stat().st_size for entry in os.scandir(tmp_path / "cache") if entry.name.endswith(".batch")
    ]
    assert sum(sizes) <= 50_000 and cache.stats.evicted > 0
    assert cache.read("entry-19") is not None and cache.read("entry-0") is None  # oldest went first


def _trial(args) -> tuple[int, int]:
    directory, seed = args
    graph = random_store(
        np.random.default_rng(0), 30, 10, 400, user_times=False
    )  # same content, same version
    features = open_feature_store(directory + "/features")
    labels = np.random.default_rng(1).integers(0, 2, 60)
    split = TrainingSplit("shop/churn/train@test", "users", np.arange(30).repeat(2), np.full(60, 45), labels)
    fetch = MinibatchFetcher(graph, features, SamplerConfig((4, 3), "uniform"), 16,
                             BatchCache(directory + "/cache"), prefetch=0)  # fmt: skip
    for _batch in fetch.epoch(split, seed):
        pass
    return fetch.cache.stats.misses, fetch.cache.stats.hits


def test_concurrent_trials_build_each_batch_once(stores, tmp_path):
    """Four processes pull the same epoch at once: four batches are sampled in all, not sixteen."""
    assert (tmp_path / "features" / "CURRENT").exists()  # the fixture's feature store, shared by the trials
    context = multiprocessing.get_context(
        "fork"
    )  # plain processes, no Pool: its helper threads and fork mix badly
    pipes, workers = [], []
    for _ in range(4):
        receiver, sender = context.Pipe(duplex=False)
        worker = context.Process(target=lambda out=sender: out.send(_trial((str(tmp_path), 3))))
        worker.start()
        pipes.append(receiver)
        workers.append(worker)
    try:
        results = []
        for receiver in pipes:
            assert receiver.poll(120), "a trial process did not finish"
            results.append(receiver.recv())
    finally:
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()
    assert sum(misses for misses, _ in results) == 4
    assert sum(hits for _, hits in results) == 12
