"""GraphSAGE over every relation of a heterogeneous graph in a handful of kernels per layer.

PyG's ``HeteroConv`` runs one ``SAGEConv`` per relation (F1 has 26), each with its own gather, scatter and two
matmuls; on a GPU a small step then waits on the host dispatching ~600 kernels, not on the device. Here every
relation's edges go through one gather and one scatter per aggregation into a row per (node, relation), so a
node's neighbourhood summaries sit side by side and one matmul applies every relation's weights at once:
``sum_r W_r agg_r(x) == [agg_1 | ... | agg_R] @ [W_1; ...; W_R]``. The model is the same as ``HeteroConv`` of
``SAGEConv`` with sum across relations, except that a relation with no edges in a batch still adds its
root and bias terms (the function a node gets does not depend on which other nodes share its batch).

Two schedules compute it from the same parameters: ``stacked`` (the above; the default on CUDA) and
``relation`` (a gather, scatter and matmul per relation; the default on a CPU, where one tensor as large as
all edges' messages costs more in fresh pages than the kernels it saves, and where it still skips HeteroConv's
R - 1 extra root matmuls per node type).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["STACKED_AGGREGATIONS", "StackedSAGEConv"]

STACKED_AGGREGATIONS = ("sum", "mean", "max")
SCHEDULES = ("auto", "stacked", "relation")
EdgeType = tuple[str, str, str]


def _uniform(shape: tuple[int, ...], fan_in: int) -> Tensor:
    """PyG's (and torch's) default ``Linear`` init: uniform in +-1/sqrt(fan_in)."""
    bound = 1.0 / math.sqrt(fan_in)
    return torch.empty(shape).uniform_(-bound, bound)


class StackedSAGEConv(nn.Module):
    """One SAGE layer over ``edge_types``: for node type d with relations r = 1..R into it,
    ``out_d = sum_r (W_r aggr_r(x_src) + b_r + V_r x_d)``, stored as one stacked ``W`` and one root linear."""

    def __init__(self, node_types: Sequence[str], edge_types: Sequence[EdgeType], channels: int,
                 aggregations: Sequence[str], schedule: str = "auto") -> None:  # fmt: skip
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
        self.schedule = schedule  # auto: stacked on CUDA (fewest kernels), by relation on a CPU
        unknown = [name for name in aggregations if name not in STACKED_AGGREGATIONS]
        if unknown or not aggregations:
            raise ValueError(f"stacked SAGE aggregates with {STACKED_AGGREGATIONS}, not {list(aggregations)}")
        self.aggregations, self.channels = list(aggregations), channels
        self.incoming: dict[str, list[EdgeType]] = {}
        for edge_type in edge_types:
            self.incoming.setdefault(edge_type[2], []).append(tuple(edge_type))
        self.destinations = [node_type for node_type in node_types if node_type in self.incoming]
        width = len(self.aggregations) * channels
        self.neighbour_weights = nn.ParameterList()
        self.roots = nn.ModuleList()
        for node_type in self.destinations:
            relations = len(self.incoming[node_type])
            weight = torch.cat([_uniform((width, channels), width) for _ in range(relations)])
            self.neighbour_weights.append(nn.Parameter(weight))
            root = nn.Linear(channels, channels)
            with torch.no_grad():  # the sum of R relations' own root weights and biases, as HeteroConv's init
                root.weight.copy_(sum(_uniform((channels, channels), channels) for _ in range(relations)))
                root.bias.copy_(sum(_uniform((channels,), width) for _ in range(relations)))
            self.roots.append(root)

    @torch.no_grad()
    def load_from_hetero_conv(self, hetero_conv: nn.Module) -> None:
        """Copy the weights of PyG's ``HeteroConv`` of ``SAGEConv`` (same relations): the test's reference."""
        for index, node_type in enumerate(self.destinations):
            convs = [hetero_conv.convs[edge_type] for edge_type in self.incoming[node_type]]
            self.neighbour_weights[index].copy_(torch.cat([conv.lin_l.weight.t() for conv in convs]))
            self.roots[index].weight.copy_(sum(conv.lin_r.weight for conv in convs))
            self.roots[index].bias.copy_(sum(conv.lin_l.bias for conv in convs))

    def forward(self, x: dict[str, Tensor], edges: dict[EdgeType, Tensor]) -> dict[str, Tensor]:
        """Outputs for every node type that receives at least one edge in ``edges`` (as ``HeteroConv``)."""
        device = next(iter(x.values())).device if x else torch.device("cpu")
        schedule = (
            self.schedule if self.schedule != "auto" else ("stacked" if device.type == "cuda" else "relation")
        )
        return (
            self._forward_stacked(x, edges) if schedule == "stacked" else self._forward_by_relation(x, edges)
        )

    def _forward_stacked(self, x: dict[str, Tensor], edges: dict[EdgeType, Tensor]) -> dict[str, Tensor]:
        """Every relation in one gather, one scatter per aggregation and one matmul per node type."""
        sources = [node_type for node_type in x if any(edge[0] == node_type for edge in edges)]
        if not sources:
            return {}
        offsets, start = {}, 0
        for node_type in sources:
            offsets[node_type], start = start, start + x[node_type].shape[0]
        gather_index, scatter_index, blocks = self._indices(x, edges, offsets)
        if not blocks:
            return {}
        base = sum(rows for _, _, rows in blocks)
        table = torch.cat([x[node_type] for node_type in sources]) if len(sources) > 1 else x[sources[0]]
        messages = table.index_select(0, gather_index)
        summaries = self._summaries(messages, scatter_index, base)
        out = {}
        # one split, not a slice per type: each slice's backward would zero-fill a gradient as large as the whole
        pieces = summaries.split([rows for _, _, rows in blocks])
        for (node_type, _, rows), piece in zip(blocks, pieces, strict=True):
            index = self.destinations.index(node_type)
            stacked = piece.reshape(x[node_type].shape[0], -1 if rows else 0)
            root = self.roots[index](x[node_type])
            out[node_type] = torch.addmm(root, stacked, self.neighbour_weights[index])
        return out

    def _forward_by_relation(self, x: dict[str, Tensor], edges: dict[EdgeType, Tensor]) -> dict[str, Tensor]:
        """The same function, a gather, a scatter and a matmul per relation into the shared root term: on a
        CPU, tensors as large as every relation's edges together are slower to allocate than to compute."""
        out = {}
        for index, node_type in enumerate(self.destinations):
            present = [(slot, edge) for slot, edge in enumerate(self.incoming[node_type]) if edge in edges]
            if not present or node_type not in x:
                continue
            weights = self.neighbour_weights[index].split(len(self.aggregations) * self.channels)
            result = self.roots[index](x[node_type])
            for slot, edge_type in present:
                source, destination = edges[edge_type]
                messages = x[edge_type[0]].index_select(0, source)
                summary = self._summaries(messages, destination, x[node_type].shape[0])
                result = torch.addmm(result, summary, weights[slot])
            out[node_type] = result
        return out

    def _summaries(self, messages: Tensor, index: Tensor, rows: int) -> Tensor:
        """Every aggregation of ``messages`` into ``rows`` rows, side by side."""
        parts = [self._aggregate(name, messages, index, rows) for name in self.aggregations]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def _indices(self, x: dict[str, Tensor], edges: dict[EdgeType, Tensor], offsets: dict[str, int]):
        """Each edge's row in the source table and its (destination node, relation) row, built with a few
        vector ops for all relations at once (per-relation index arithmetic would cost ~4 kernels each)."""
        order, source_offset, stride, shift, blocks, base = [], [], [], [], [], 0
        for node_type in self.destinations:
            relations = self.incoming[node_type]
            present = [(slot, edge_type) for slot, edge_type in enumerate(relations) if edge_type in edges]
            if not present or node_type not in x:
                continue
            for slot, edge_type in present:
                order.append(edges[edge_type])
                source_offset.append(offsets[edge_type[0]])
                stride.append(len(relations))
                shift.append(base + slot)
            rows = x[node_type].shape[0] * len(relations)
            blocks.append((node_type, base, rows))
            base += rows
        if not order:
            return None, None, []
        pairs = torch.cat(order, dim=1) if len(order) > 1 else order[0]
        device, total = pairs.device, pairs.shape[1]
        counts = torch.tensor([index.shape[1] for index in order], device=device)
        per_relation = torch.tensor([source_offset, stride, shift], device=device)
        per_edge = per_relation.repeat_interleave(counts, dim=1, output_size=total)
        return pairs[0] + per_edge[0], pairs[1] * per_edge[1] + per_edge[2], blocks

    def _aggregate(self, name: str, messages: Tensor, index: Tensor, rows: int) -> Tensor:
        """Rows of ``messages`` reduced into ``rows`` rows by ``index``; empty rows are zero (as PyG's)."""
        if name == "max":
            expanded = index.unsqueeze(-1).expand_as(messages)
            empty = messages.new_zeros((rows, messages.shape[1]))
            return empty.scatter_reduce(0, expanded, messages, reduce="amax", include_self=False)
        total = messages.new_zeros((rows, messages.shape[1])).index_add_(0, index, messages)
        if name == "mean":
            # not bincount: on CUDA it reads the largest index back to the host, a sync per layer; float32 so
            # that counts above 256 stay exact when messages are bf16
            ones = torch.ones(index.shape[0], device=index.device)
            counts = torch.zeros(rows, device=index.device).index_add_(0, index, ones).clamp_(min=1)
            total = (total / counts.unsqueeze(-1)).to(messages.dtype)
        return total
