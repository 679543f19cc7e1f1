"""The heterogeneous temporal GNN family: encoders -> L message-passing layers -> task head.

One model class covers GraphSAGE, GATv2, GIN and HGT layers with the same skeleton (per-type
normalisation, residuals, dropout), so AutoML varies the layer kind like any other parameter. It consumes
the fetcher's `HeteroData` minibatches (seeds first in the seed type, per-node ``batch``/``time``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData
from torch_geometric.nn import MLP, GATv2Conv, GINConv, HeteroConv, HGTConv, SAGEConv
from torch_geometric.utils import trim_to_layer

from models.encoders import (
    AbsoluteTimeEncoder,
    NodeEncoder,
    RelativeTimeEncoder,
    ShallowEmbeddings,
    TypeModules,
)
from models.heads import RANKING_TYPES, TaskHead, TaskSpec
from models.stacked_sage import STACKED_AGGREGATIONS, StackedSAGEConv

__all__ = ["CONV_KINDS", "GNNConfig", "RelationalGNN"]

CONV_KINDS = ("sage", "gatv2", "gin", "hgt")
EdgeType = tuple[str, str, str]


@dataclass(frozen=True)
class GNNConfig:
    """Architecture of one model. ``aggr``: neighbour aggregation(s), comma-separated (sum, mean, max, std);
    ``hetero_aggr``: how messages from different edge types into one node type combine."""

    conv: str = "sage"
    channels: int = 128
    layers: int = 2
    aggr: str = "sum"
    hetero_aggr: str = "sum"
    norm: str = "layer"
    dropout: float = 0.0
    residual: bool = True
    encoder_layers: int = 1
    head_layers: int = 1
    attention_heads: int = 4
    temporal: bool = True
    absolute_time: bool = (
        False  # also give seeds their anchor's calendar time (lets a model learn era effects)
    )
    shallow: tuple[str, ...] = ()
    revisits: bool = True  # link prediction: also score targets found in the seed's own subgraph
    stacked: bool = (
        True  # SAGE layers as StackedSAGEConv; False: PyG's HeteroConv of SAGEConv (the reference)
    )

    def __post_init__(self) -> None:
        if self.conv not in CONV_KINDS:
            raise ValueError(f"unknown conv {self.conv!r}; choose one of {CONV_KINDS}")
        if self.norm not in {"layer", "batch", "none"}:
            raise ValueError(f"unknown norm {self.norm!r}; choose layer, batch or none")
        if self.conv in {"gatv2", "hgt"} and self.channels % self.attention_heads:
            raise ValueError(f"channels ({self.channels}) must be a multiple of attention_heads "
                             f"({self.attention_heads}) for {self.conv}")  # fmt: skip

    def to_dict(self) -> dict:
        return asdict(self)


def _aggregation(config: GNNConfig) -> list[str]:
    return [name.strip() for name in config.aggr.split(",") if name.strip()]


def _pyg_aggregation(config: GNNConfig) -> str | list[str]:
    names = _aggregation(config)
    return names[0] if len(names) == 1 else names


def _conv(config: GNNConfig, node_types: Sequence[str], edge_types: Sequence[EdgeType]) -> nn.Module:
    """One message-passing layer over every edge type."""
    channels = config.channels
    stackable = set(_aggregation(config)) <= set(STACKED_AGGREGATIONS) and config.hetero_aggr == "sum"
    if config.conv == "sage" and config.stacked and stackable:
        return StackedSAGEConv(node_types, edge_types, channels, _aggregation(config))
    if config.conv == "hgt":
        return HGTConv(channels, channels, (list(node_types), list(edge_types)), heads=config.attention_heads)

    def relation() -> nn.Module:
        if config.conv == "sage":
            return SAGEConv((channels, channels), channels, aggr=_pyg_aggregation(config))
        if config.conv == "gatv2":
            return GATv2Conv((channels, channels), channels // config.attention_heads,
                             heads=config.attention_heads, add_self_loops=False)  # fmt: skip
        return GINConv(MLP([channels, channels, channels], norm=None), train_eps=True,
                       aggr=_pyg_aggregation(config))  # fmt: skip

    return HeteroConv({edge_type: relation() for edge_type in edge_types}, aggr=config.hetero_aggr)


def _norm(kind: str, channels: int) -> nn.Module:
    return {"layer": nn.LayerNorm, "batch": nn.BatchNorm1d}.get(kind, lambda _: nn.Identity())(channels)


class RelationalGNN(nn.Module):
    """Predicts for the seed nodes of ``seed_type`` from their sampled temporal neighbourhoods."""

    def __init__(
        self,
        node_types: Sequence[str],
        edge_types: Sequence[EdgeType],
        feature_schema: Mapping,
        seed_type: str,
        spec: TaskSpec,
        config: GNNConfig | None = None,
        node_counts: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        config = config or GNNConfig()
        self.config, self.seed_type = config, seed_type
        self.node_types, self.edge_types = list(node_types), [tuple(edge) for edge in edge_types]
        channels = config.channels
        self.encoder = NodeEncoder(self.node_types, feature_schema, channels, config.encoder_layers)
        self.time_encoder = RelativeTimeEncoder(channels) if config.temporal else None
        self.anchor_encoder = AbsoluteTimeEncoder(channels) if config.absolute_time else None
        self.shallow = (
            ShallowEmbeddings(node_counts or {}, config.shallow, channels) if config.shallow else None
        )
        self.convs = nn.ModuleList(
            _conv(config, self.node_types, self.edge_types) for _ in range(config.layers)
        )
        self.norms = nn.ModuleList(
            TypeModules({node_type: _norm(config.norm, channels) for node_type in self.node_types})
            for _ in range(config.layers)
        )
        self.dropout = nn.Dropout(config.dropout)
        self.head = TaskHead(spec, channels, config.head_layers, config.dropout)
        ranks_nodes = spec.task_type in RANKING_TYPES and spec.target_type in self.node_types
        self.revisits = (
            RevisitScorer(spec.target_type, spec.outputs, channels)
            if config.revisits and ranks_nodes
            else None
        )

    def embed(self, batch: HeteroData) -> Tensor:
        """The seed entities' embeddings (rows ``[0, batch_size)`` of the seed type), before the head."""
        return self._propagate(batch, self._encode(batch))

    def _encode(self, batch: HeteroData) -> dict[str, Tensor]:
        """Every node's input vector: its encoded features plus time (relative to its seed) encodings."""
        x = self.encoder(batch)
        seed_store = batch[self.seed_type]
        if self.time_encoder is not None:
            for node_type in x:
                store = batch[node_type]
                if "time" in store:
                    x[node_type] = x[node_type] + self.time_encoder(
                        seed_store.seed_time, store.batch, store.time
                    )
        if self.anchor_encoder is not None:
            anchors = seed_store.anchor_time if "anchor_time" in seed_store else seed_store.seed_time
            encoded = self.anchor_encoder(anchors, seed_store.seed_time)
            seeds = x[self.seed_type][: seed_store.batch_size] + encoded
            x[self.seed_type] = torch.cat([seeds, x[self.seed_type][seed_store.batch_size :]])
        if self.shallow is not None:
            for node_type, vectors in self.shallow(batch).items():
                x[node_type] = x[node_type] + vectors
        return x

    def _propagate(self, batch: HeteroData, x: dict[str, Tensor]) -> Tensor:
        seed_store = batch[self.seed_type]
        edges = {edge_type: batch[edge_type].edge_index for edge_type in batch.edge_types
                 if batch[edge_type].edge_index.numel()}  # fmt: skip
        nodes_per_hop = {node_type: batch[node_type].num_sampled_nodes for node_type in x}
        edges_per_hop = {edge_type: batch[edge_type].num_sampled_edges for edge_type in edges}
        hops = min((len(counts) - 1 for counts in nodes_per_hop.values()), default=0)
        for layer, (conv, norms) in enumerate(zip(self.convs, self.norms, strict=True)):
            if 0 < layer <= hops:  # drop the outermost hop: its nodes cannot reach a seed any more
                x, edges, _ = trim_to_layer(layer, nodes_per_hop, edges_per_hop, x, edges)
            messages = conv(x, edges) if edges else {}
            updated = dict(x)
            for node_type, value in messages.items():
                if value is None:
                    continue
                value = self.dropout(torch.relu(norms[node_type](value)))
                updated[node_type] = value + x[node_type] if self.config.residual else value
            x = updated
        return x[self.seed_type][: seed_store.batch_size]

    def forward(self, batch: HeteroData) -> tuple[Tensor, Tensor]:
        """(raw head output, entity embedding) for the batch's seeds."""
        inputs = self._encode(batch)
        embedding = self._propagate(batch, inputs)
        out = self.head(embedding)
        if self.revisits is not None:
            out = out + self.revisits(batch, inputs, embedding)
        return out, embedding


class RevisitScorer(nn.Module):
    """Adds to a seed's score of target t a learned term for every edge into t inside the seed's own
    subgraph (e.g. each past purchase of product t, whose time encoding says how recent it is). A vector per
    target alone cannot say "this entity links to t again"; this term can, as ID-aware GNNs do."""

    def __init__(self, target_type: str, outputs: int, channels: int) -> None:
        super().__init__()
        self.target_type, self.outputs = target_type, outputs
        self.score = nn.Sequential(nn.Linear(3 * channels, channels), nn.ReLU(), nn.Linear(channels, 1))

    def forward(self, batch: HeteroData, inputs: dict[str, Tensor], seeds: Tensor) -> Tensor:
        out = seeds.new_zeros((seeds.shape[0], self.outputs))
        if self.target_type not in batch.node_types or "n_id" not in batch[self.target_type]:
            return out
        target = batch[self.target_type]
        for edge_type in batch.edge_types:  # sampled edges point at the seed: a target may be either end
            source, _, destination = edge_type
            index = batch[edge_type].edge_index
            if (source == self.target_type) == (destination == self.target_type) or not index.numel():
                continue
            at_target = 0 if source == self.target_type else 1
            node, other = index[at_target], index[1 - at_target]
            other_type = destination if at_target == 0 else source
            owner = target.batch[node]  # the seed whose subgraph holds the edge
            pieces = [inputs[other_type][other], inputs[self.target_type][node], seeds[owner]]
            scores = self.score(torch.cat(pieces, dim=-1)).squeeze(-1).to(out.dtype)
            out = out.index_put((owner, target.n_id[node]), scores, accumulate=True)
        return out
