"""Node encoders: feature-store blocks -> one vector per sampled node, plus a relative-time encoding.

Each node type reads the blocks the feature store wrote for it (numerical floats, categorical codes, text
embeddings); a node type without features gets a learned constant. Nodes with a time also get an encoding
of how long before their seed's anchor they happened, which is how the GNN sees recency.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData

__all__ = ["AbsoluteTimeEncoder", "NodeEncoder", "RelativeTimeEncoder", "ShallowEmbeddings", "TypeModules"]

SECONDS_PER_DAY = 86_400.0


class _TypeEncoder(nn.Module):
    """One node type: a linear map per block, category embeddings summed over columns, then an MLP."""

    def __init__(self, meta: Mapping, channels: int, layers: int) -> None:
        super().__init__()
        blocks = meta.get("blocks", {})
        self.numerical = nn.Linear(blocks["numerical"], channels) if blocks.get("numerical") else None
        self.text = nn.Linear(blocks["text"], channels) if blocks.get("text") else None
        sizes = [len(column["stats"].get("vocabulary", [])) + 2
                 for column in meta.get("columns", []) if column["block"] == "categorical"]  # fmt: skip
        self.categorical = nn.Embedding(sum(sizes), channels) if sizes else None
        offsets = torch.tensor([0, *sizes[:-1]], dtype=torch.long).cumsum(0) if sizes else torch.zeros(0)
        self.register_buffer("offsets", offsets.long(), persistent=False)
        self.constant = (
            None if (self.numerical or self.text or self.categorical) else nn.Parameter(torch.zeros(channels))
        )
        mlp: list[nn.Module] = []
        for _ in range(max(layers - 1, 0)):
            mlp += [nn.LayerNorm(channels), nn.ReLU(), nn.Linear(channels, channels)]
        self.mlp = nn.Sequential(nn.LayerNorm(channels), *mlp)

    def forward(self, store, count: int) -> Tensor:
        parts = []
        if self.numerical is not None:
            parts.append(self.numerical(torch.nan_to_num(store["numerical"].float())))
        if self.text is not None:
            parts.append(self.text(store["text"].float()))
        if self.categorical is not None:
            codes = store["categorical"].long() + self.offsets
            parts.append(self.categorical(codes).sum(dim=1))
        if not parts:
            return self.mlp(self.constant.expand(count, -1))
        return self.mlp(torch.stack(parts).sum(dim=0))


class TypeModules(nn.Module):
    """One module per node type. Keys are escaped: a table named like an attribute of ``nn.ModuleDict``
    ("items", "keys", "values", "update") would otherwise be refused."""

    def __init__(self, modules: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.node_types = list(modules)
        self.by_type = nn.ModuleDict({f"type_{node_type}": module for node_type, module in modules.items()})

    def __getitem__(self, node_type: str) -> nn.Module:
        return self.by_type[f"type_{node_type}"]

    def items(self) -> list[tuple[str, nn.Module]]:
        return [(node_type, self[node_type]) for node_type in self.node_types]

    def values(self) -> list[nn.Module]:
        return [self[node_type] for node_type in self.node_types]


class NodeEncoder(nn.Module):
    """Encoders for every node type, built from the feature store's schema (``schema["node_types"]``)."""

    def __init__(self, node_types: Sequence[str], feature_schema: Mapping, channels: int, layers: int = 1):
        super().__init__()
        self.encoders = TypeModules(
            {
                node_type: _TypeEncoder(feature_schema.get(node_type, {}), channels, layers)
                for node_type in node_types
            }
        )

    def forward(self, batch: HeteroData) -> dict[str, Tensor]:
        return {
            node_type: encoder(batch[node_type], batch[node_type].n_id.numel())
            for node_type, encoder in self.encoders.items()
            if node_type in batch.node_types
        }


class RelativeTimeEncoder(nn.Module):
    """Sinusoids of (seed time - node time) in days at geometric frequencies (1 day .. ~30 years), mapped
    to ``channels``; also log1p(days) so the linear map can see magnitude directly."""

    def __init__(self, channels: int, frequencies: int = 16) -> None:
        super().__init__()
        periods = torch.logspace(0, math.log10(365.25 * 30), frequencies)
        self.register_buffer("angular", 2 * math.pi / periods, persistent=False)
        self.linear = nn.Linear(2 * frequencies + 1, channels)

    def forward(self, seed_time: Tensor, batch: Tensor, node_time: Tensor) -> Tensor:
        days = (seed_time[batch] - node_time).float() / SECONDS_PER_DAY
        days = days.clamp(min=0.0)  # the sampler never returns future nodes; guard rounding anyway
        angles = days.unsqueeze(-1) * self.angular
        return self.linear(torch.cat([angles.sin(), angles.cos(), torch.log1p(days).unsqueeze(-1)], dim=-1))


class AbsoluteTimeEncoder(nn.Module):
    """Where the prediction stands in time: the anchor's years since 2000 (scaled), its season (sin/cos of
    the day) and how stale the seed's view is (anchor - seed time, years; 0 unless the graph is frozen)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(4, channels)

    def forward(self, anchor_seconds: Tensor, seed_seconds: Tensor | None = None) -> Tensor:
        days = anchor_seconds.double() / SECONDS_PER_DAY
        years = ((days - 10_957.0) / 365.25 / 10.0).float()  # 10,957 days = 2000-01-01
        season = (2 * math.pi * (days % 365.25) / 365.25).float()
        gap = torch.zeros_like(years)
        if seed_seconds is not None:
            gap = ((anchor_seconds - seed_seconds).double() / SECONDS_PER_DAY / 365.25).float()
        return self.linear(torch.stack([years, season.sin(), season.cos(), gap], dim=-1))


class ShallowEmbeddings(nn.Module):
    """A learned vector per node of chosen types (e.g. per driver): memorises entity identity."""

    def __init__(self, node_counts: Mapping[str, int], node_types: Sequence[str], channels: int) -> None:
        super().__init__()
        self.tables = TypeModules(
            {node_type: nn.Embedding(node_counts[node_type], channels) for node_type in node_types}
        )
        for table in self.tables.values():
            nn.init.normal_(table.weight, std=0.01)

    def forward(self, batch: HeteroData) -> dict[str, Tensor]:
        return {
            node_type: table(batch[node_type].n_id)
            for node_type, table in self.tables.items()
            if node_type in batch.node_types
        }
