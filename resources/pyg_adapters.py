"""Our graph store and sampler behind PyG's interfaces, so standard PyG hetero models train on our batches.

- `PygGraphStore`: torch_geometric's `GraphStore` over an opened (mmap'd) version, CSC layout.
- `NodeTimeStore`: a minimal torch_geometric `FeatureStore` serving node times (the real feature store
  plugs in the same way).
- `PygTemporalSampler`: a `BaseSampler` whose `sample_from_nodes` runs our numba sampler, so
  `torch_geometric.loader.NodeLoader` yields `HeteroData` with `n_id`, `batch`, `time`, `input_id`,
  `seed_time`, `num_sampled_nodes` and `num_sampled_edges`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
from torch_geometric.data import EdgeAttr, FeatureStore, GraphStore, TensorAttr
from torch_geometric.loader import NodeLoader
from torch_geometric.sampler import BaseSampler, HeteroSamplerOutput, NodeSamplerInput

from resources.graph_store import StoredGraph
from resources.sampler import SamplerConfig, TemporalSampler

__all__ = ["NodeTimeStore", "PygGraphStore", "PygTemporalSampler", "temporal_node_loader"]


def _tensor(array: np.ndarray) -> torch.Tensor:
    """Zero-copy tensor over a (possibly read-only, memory-mapped) array; torch never writes to it here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "non-writable array": we only read
        return torch.from_numpy(np.asarray(array))


class PygGraphStore(GraphStore):
    """Read-only PyG view of a stored graph: ``get_edge_index(edge_type, layout='csc')`` -> (colptr, row)."""

    def __init__(self, graph: StoredGraph) -> None:
        super().__init__()
        self.graph = graph

    def _put_edge_index(self, edge_index, edge_attr: EdgeAttr) -> bool:
        raise TypeError("the graph store is immutable: build a new version with the graph_store asset")

    def _remove_edge_index(self, edge_attr: EdgeAttr) -> bool:
        raise TypeError("the graph store is immutable: build a new version with the graph_store asset")

    def _get_edge_index(self, edge_attr: EdgeAttr):
        edge_type = tuple(edge_attr.edge_type)
        if edge_type not in self.graph.csc:
            return None
        if str(edge_attr.layout) not in {"csc", "EdgeLayout.CSC"}:
            raise ValueError(f"only the CSC layout is stored, not {edge_attr.layout}")
        indptr, indices = self.graph.csc[edge_type]
        return _tensor(indptr).to(torch.long), _tensor(indices).to(torch.long)

    def get_all_edge_attrs(self) -> list[EdgeAttr]:
        counts = self.graph.node_counts
        return [
            EdgeAttr(edge_type, "csc", size=(counts[edge_type[0]], counts[edge_type[2]]))
            for edge_type in self.graph.edge_types
        ]


class NodeTimeStore(FeatureStore):
    """A feature store that holds only node times (``attr_name='time'``) for the temporal node types."""

    def __init__(self, graph: StoredGraph) -> None:
        super().__init__()
        self.graph = graph

    def _put_tensor(self, tensor, attr: TensorAttr) -> bool:
        raise TypeError("node times come from the graph store version and cannot be changed")

    def _remove_tensor(self, attr: TensorAttr) -> bool:
        raise TypeError("node times come from the graph store version and cannot be changed")

    def _get_tensor(self, attr: TensorAttr):
        times = self.graph.node_times.get(attr.group_name)
        if times is None or attr.attr_name != "time":
            return None
        index = attr.index
        if index is None:
            return _tensor(times)
        return torch.from_numpy(np.asarray(times)[np.asarray(index, dtype=np.int64)])

    def _get_tensor_size(self, attr: TensorAttr):
        times = self.graph.node_times.get(attr.group_name)
        return None if times is None else (len(times),)

    def get_all_tensor_attrs(self) -> list[TensorAttr]:
        return [TensorAttr(node_type, "time") for node_type in self.graph.node_times]


class PygTemporalSampler(BaseSampler):
    """PyG `BaseSampler` running our temporal sampler; the rng seed advances with every batch."""

    def __init__(self, sampler: TemporalSampler, rng_seed: int = 0) -> None:
        self.sampler = sampler
        self.rng_seed = rng_seed
        self._batches = 0

    def sample_from_nodes(self, inputs: NodeSamplerInput, **kwargs) -> HeteroSamplerOutput:
        if inputs.input_type is None:
            raise ValueError("the temporal sampler is heterogeneous: pass input_nodes=(node_type, ids)")
        seeds = inputs.node.numpy()
        times = inputs.time.numpy() if inputs.time is not None else None
        self._batches += 1
        out = self.sampler.sample(
            inputs.input_type, seeds, times, rng_seed=self.rng_seed * 1_000_003 + self._batches
        )
        return HeteroSamplerOutput(
            node={key: torch.from_numpy(value) for key, value in out.node.items()},
            row={key: torch.from_numpy(value) for key, value in out.row.items()},
            col={key: torch.from_numpy(value) for key, value in out.col.items()},
            edge={},
            batch={key: torch.from_numpy(value) for key, value in out.batch.items()},
            num_sampled_nodes=out.num_sampled_nodes,
            num_sampled_edges=out.num_sampled_edges,
            metadata=(inputs.input_id, inputs.time),
        )

    def sample_from_edges(self, inputs, neg_sampling=None):
        raise NotImplementedError("link-level sampling arrives with link prediction training; use node seeds")

    @property
    def edge_permutation(self):
        return None


def temporal_node_loader(
    graph: StoredGraph,
    node_type: str,
    seeds: Sequence[int] | np.ndarray,
    seed_times: Sequence[int] | np.ndarray,
    config: SamplerConfig,
    batch_size: int = 512,
    shuffle: bool = False,
    rng_seed: int = 0,
    feature_store: FeatureStore | None = None,
    threads: int | None = None,
    **loader_kwargs,
) -> NodeLoader:
    """A PyG `NodeLoader` over our stores: each batch is a `HeteroData` ready for a hetero GNN."""
    sampler = PygTemporalSampler(TemporalSampler(graph, config, threads=threads), rng_seed)
    return NodeLoader(
        data=(feature_store or NodeTimeStore(graph), PygGraphStore(graph)),
        node_sampler=sampler,
        input_nodes=(node_type, torch.as_tensor(np.asarray(seeds, dtype=np.int64))),
        input_time=torch.as_tensor(np.asarray(seed_times, dtype=np.int64)),
        batch_size=batch_size,
        shuffle=shuffle,
        **loader_kwargs,
    )
