"""The minibatch fetcher: training-table split -> HeteroData minibatches (subgraph + features + labels).

Batches are cached under a key of (graph version, feature version, split, batch size, sampling config,
epoch seed, batch index), so trials that share a sampling config reuse each other's batches instead of
sampling and gathering again; a background thread builds the next batches while the trainer computes.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch_geometric.data import HeteroData

from stores.batch_cache import BatchCache
from stores.batch_codec import BATCH_FORMAT, decode_content, encode_content
from stores.feature_store import StoredFeatures
from stores.graph_store import StoredGraph
from stores.sampler import SamplerConfig, TemporalSampler

__all__ = ["MinibatchFetcher", "TrainingSplit", "decode_batch"]


@dataclass(frozen=True)
class TrainingSplit:
    """Seeds of one split of a training table: node ids of ``node_type``, their anchor times and labels.

    ``name`` identifies the table version and split (e.g. ``f1/driver_dnf/train@<content hash>``).
    """

    name: str
    node_type: str
    seeds: np.ndarray
    seed_times: np.ndarray
    labels: np.ndarray
    # when each row's prediction is made; None = its seed time. Later than the seed time when the graph is
    # frozen (or a stale view is simulated): the model can then tell how stale its view is.
    anchor_times: np.ndarray | None = None

    def predicted_at(self) -> np.ndarray:
        return self.seed_times if self.anchor_times is None else self.anchor_times


class MinibatchFetcher:
    """Builds (or reads from the shared cache) the minibatches of an epoch, prefetching in the background."""

    def __init__(
        self,
        graph: StoredGraph,
        features: StoredFeatures,
        sampling: SamplerConfig,
        batch_size: int,
        cache: BatchCache | None = None,
        prefetch: int = 2,
        threads: int | None = None,
    ) -> None:
        self.graph = graph
        self.features = features
        self.sampling = sampling
        self.batch_size = batch_size
        self.cache = cache
        self.prefetch = prefetch
        self.sampler = TemporalSampler(graph, sampling, threads=threads)
        self.sampler_invocations = 0

    def batches_per_epoch(self, split: TrainingSplit) -> int:
        return -(-len(split.seeds) // self.batch_size)

    def key(self, split: TrainingSplit, epoch_seed: int, index: int) -> str:
        sampling = f"{self.sampling.fanouts}|{self.sampling.strategy}|{self.sampling.windows}"
        masked = f"|masked={','.join(self.features.masked)}" if self.features.masked else ""
        # the byte format is part of the key: entries an older format wrote are never read as this one
        return (
            f"{BATCH_FORMAT}|graph={self.graph.version}|features={self.features.version}{masked}|split={split.name}|"
            f"batch_size={self.batch_size}|sampling={sampling}|epoch={epoch_seed}|batch={index}"
        )

    def order(self, split: TrainingSplit, epoch_seed: int, shuffle: bool) -> np.ndarray:
        if not shuffle:
            return np.arange(len(split.seeds))
        return np.random.default_rng(epoch_seed).permutation(len(split.seeds))

    def payload(self, split: TrainingSplit, epoch_seed: int, index: int, shuffle: bool = True) -> bytes:
        """The serialised batch: from the cache when present, else built (and cached)."""
        if self.cache is None:
            return self.build(split, epoch_seed, index, shuffle)
        return self.cache.get_or_build(
            self.key(split, epoch_seed, index) + f"|shuffle={shuffle}",
            lambda: self.build(split, epoch_seed, index, shuffle),
        )

    def build(self, split: TrainingSplit, epoch_seed: int, index: int, shuffle: bool = True) -> bytes:
        """The serialised batch (`stores.batch_codec`), built without the cache."""
        return encode_content(self.content(split, epoch_seed, index, shuffle))

    def content(self, split: TrainingSplit, epoch_seed: int, index: int, shuffle: bool = True) -> dict:
        """Sample the batch's subgraph, gather its features and labels, as plain tensors."""
        rows = self.order(split, epoch_seed, shuffle)[index * self.batch_size : (index + 1) * self.batch_size]
        seeds, times = split.seeds[rows], split.seed_times[rows]
        self.sampler_invocations += 1
        out = self.sampler.sample(split.node_type, seeds, times, rng_seed=epoch_seed * 1_000_003 + index)
        nodes = {}
        for node_type, ids in out.node.items():
            entry = {"n_id": torch.from_numpy(ids), "batch": torch.from_numpy(out.batch[node_type])}
            if node_type in self.graph.node_times:
                entry["time"] = torch.from_numpy(np.asarray(self.graph.node_times[node_type])[ids])
            for group, block in self.features.blocks:
                if group == node_type:  # masked columns come back zeroed (`StoredFeatures.with_masked`)
                    entry[block] = torch.from_numpy(self.features.gather(group, block, ids))
            entry["num_sampled_nodes"] = torch.tensor(out.num_sampled_nodes[node_type])
            nodes[node_type] = entry
        edges = {
            "__".join(edge_type): {
                "edge_index": torch.from_numpy(np.stack([out.row[edge_type], out.col[edge_type]])),
                "num_sampled_edges": torch.tensor(out.num_sampled_edges[edge_type]),
            }
            for edge_type in out.row
        }
        seed = {
            "input_id": torch.from_numpy(rows.astype(np.int64)),
            "seed_time": torch.from_numpy(times.astype(np.int64)),
            "anchor_time": torch.from_numpy(split.predicted_at()[rows].astype(np.int64)),
            "y": torch.from_numpy(np.asarray(split.labels)[rows]),
        }
        return {"node_type": split.node_type, "nodes": nodes, "edges": edges, "seed": seed}

    def epoch(self, split: TrainingSplit, epoch_seed: int, shuffle: bool = True) -> Iterator[HeteroData]:
        """Every minibatch of one epoch, in order; up to ``prefetch`` batches are built ahead in a thread."""
        count = self.batches_per_epoch(split)

        def make(index: int):
            if self.cache is None:  # nothing to share: skip serialising
                return self.content(split, epoch_seed, index, shuffle)
            return self.payload(split, epoch_seed, index, shuffle)

        if self.prefetch <= 0:
            for index in range(count):
                yield decode_batch(make(index))
            return
        ready: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def produce() -> None:
            try:
                for index in range(count):
                    if stop.is_set():
                        return
                    ready.put(make(index))
                ready.put(None)
            except BaseException as error:  # handed to the consumer, which re-raises it
                ready.put(error)

        worker = threading.Thread(target=produce, name="fetcher-prefetch", daemon=True)
        worker.start()
        try:
            while True:
                item = ready.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield decode_batch(item)
        finally:
            stop.set()
            while worker.is_alive():
                try:
                    ready.get_nowait()
                except queue.Empty:
                    worker.join(0.01)


def decode_batch(payload: bytes | dict) -> HeteroData:
    """A batch (serialised by `stores.batch_codec`, or its tensors) as `HeteroData`."""
    content = payload if isinstance(payload, dict) else decode_content(payload)
    data = HeteroData()
    for node_type, entry in content["nodes"].items():
        for name, value in entry.items():
            data[node_type][name] = value.tolist() if name == "num_sampled_nodes" else value
    for key, entry in content["edges"].items():
        edge_type = tuple(key.split("__"))
        data[edge_type].edge_index = entry["edge_index"]
        data[edge_type].num_sampled_edges = entry["num_sampled_edges"].tolist()
    seed_store = data[content["node_type"]]
    for name, value in content["seed"].items():
        seed_store[name] = value
    seed_store.batch_size = len(content["seed"]["input_id"])
    return data
