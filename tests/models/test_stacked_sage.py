"""Stacked SAGE computes what PyG's HeteroConv of SAGEConv computes, with every relation in one matmul."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.nn import HeteroConv, SAGEConv

from models.gnn import GNNConfig, RelationalGNN
from models.heads import TaskSpec
from models.stacked_sage import StackedSAGEConv

NODE_TYPES = ["users", "orders", "items"]
EDGE_TYPES = [
    ("orders", "rev_user", "users"),
    ("users", "user", "orders"),
    ("items", "item", "orders"),
    ("orders", "rev_item", "items"),
    ("users", "friend", "users"),  # a second relation into users, from the same type
]
CHANNELS = 8


def reference_and_stacked(
    aggregations: list[str], schedule: str = "stacked"
) -> tuple[HeteroConv, StackedSAGEConv]:
    aggr = aggregations[0] if len(aggregations) == 1 else aggregations
    reference = HeteroConv({edge: SAGEConv((CHANNELS, CHANNELS), CHANNELS, aggr=aggr) for edge in EDGE_TYPES})
    stacked = StackedSAGEConv(NODE_TYPES, EDGE_TYPES, CHANNELS, aggregations, schedule)
    stacked.load_from_hetero_conv(reference)
    return reference, stacked


def random_graph(sizes: list[int], edge_counts: list[int], seed: int):
    generator = torch.Generator().manual_seed(seed)
    x = {name: torch.randn(size, CHANNELS, generator=generator, requires_grad=True)
         for name, size in zip(NODE_TYPES, sizes, strict=True)}  # fmt: skip
    edges = {}
    for edge, count in zip(EDGE_TYPES, edge_counts, strict=True):
        if count:
            source = torch.randint(0, x[edge[0]].shape[0], (count,), generator=generator)
            destination = torch.randint(0, x[edge[2]].shape[0], (count,), generator=generator)
            edges[edge] = torch.stack([source, destination])
    return x, edges


AGGREGATIONS = st.sampled_from([["sum"], ["mean"], ["max"], ["sum", "mean", "max"], ["max", "sum"]])


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=3, max_size=3),
    edge_counts=st.lists(st.integers(1, 40), min_size=5, max_size=5),
    aggregations=AGGREGATIONS,
    schedule=st.sampled_from(["stacked", "relation"]),
    seed=st.integers(0, 2**16),
)
def test_outputs_and_gradients_equal_hetero_conv_of_sage(sizes, edge_counts, aggregations, schedule, seed):
    torch.manual_seed(seed)
    reference, stacked = reference_and_stacked(aggregations, schedule)
    x, edges = random_graph(sizes, edge_counts, seed)
    expected, got = reference(x, edges), stacked(x, edges)
    assert set(got) == set(expected)
    for node_type in expected:
        torch.testing.assert_close(got[node_type], expected[node_type], rtol=1e-5, atol=1e-5)
    weights = {node_type: torch.randn_like(value) for node_type, value in expected.items()}
    expected_grads = torch.autograd.grad(sum((expected[t] * w).sum() for t, w in weights.items()), list(x.values()),
                                         allow_unused=True)  # fmt: skip
    got_grads = torch.autograd.grad(sum((got[t] * w).sum() for t, w in weights.items()), list(x.values()),
                                    allow_unused=True)  # fmt: skip
    for want, have in zip(expected_grads, got_grads, strict=True):
        if want is None:
            assert have is None or not have.abs().sum()
        else:
            torch.testing.assert_close(have, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("schedule", ["stacked", "relation"])
@pytest.mark.parametrize("aggregations", [["sum"], ["mean", "max"]])
def test_a_relation_without_edges_still_adds_its_root_and_bias(aggregations, schedule):
    """HeteroConv skips an edgeless relation; stacked SAGE counts it as an empty neighbourhood, so a node's
    output does not depend on whether another node in its batch had such an edge."""
    torch.manual_seed(0)
    reference, stacked = reference_and_stacked(aggregations, schedule)
    x, edges = random_graph([5, 6, 4], [10, 10, 10, 10, 10], seed=1)
    absent = ("users", "friend", "users")
    del edges[absent]
    expected = reference(x, edges)
    skipped = reference.convs[absent]
    expected["users"] = expected["users"] + skipped.lin_r(x["users"]) + skipped.lin_l.bias
    got = stacked(x, edges)
    for node_type in expected:
        torch.testing.assert_close(got[node_type], expected[node_type], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("schedule", ["stacked", "relation"])
def test_node_types_without_rows_or_edges(schedule):
    torch.manual_seed(0)
    _, stacked = reference_and_stacked(["sum"], schedule)
    x, edges = random_graph([3, 4, 2], [5, 5, 5, 5, 5], seed=2)
    x["items"] = x["items"][:0]
    edges = {edge: index for edge, index in edges.items() if "items" not in (edge[0], edge[2])}
    got = stacked(x, edges)
    assert set(got) == {"users", "orders"}
    assert stacked(x, {}) == {}


def test_the_sage_model_uses_stacked_layers_unless_it_needs_pyg():
    def first_layer(**config) -> torch.nn.Module:
        model = RelationalGNN(NODE_TYPES, EDGE_TYPES, {}, "users", TaskSpec("binary_classification"),
                              GNNConfig(conv="sage", channels=CHANNELS, **config))  # fmt: skip
        return model.convs[0]

    assert isinstance(first_layer(aggr="sum,max"), StackedSAGEConv)
    assert isinstance(first_layer(aggr="std"), HeteroConv)
    assert isinstance(first_layer(stacked=False), HeteroConv)
    assert isinstance(first_layer(hetero_aggr="mean"), HeteroConv)


def test_unknown_aggregation_or_schedule_is_refused():
    with pytest.raises(ValueError, match="stacked SAGE aggregates with"):
        StackedSAGEConv(NODE_TYPES, EDGE_TYPES, CHANNELS, ["median"])
    with pytest.raises(ValueError, match="unknown schedule"):
        StackedSAGEConv(NODE_TYPES, EDGE_TYPES, CHANNELS, ["sum"], "fused")
