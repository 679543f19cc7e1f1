"""benchmarks/bench_gpu.py on the real F1 stores: one shape's row, on the CPU core here and on CUDA where a GPU
is present (the benchmark's numbers live in docs/benchmarks.md; this keeps the script from rotting)."""

from __future__ import annotations

import sys
from argparse import Namespace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def _bench_gpu():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import bench_gpu
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return bench_gpu


def test_one_shape_row_has_the_cpu_core_and_estimate_figures(tmp_path: Path):
    bench_gpu = _bench_gpu()
    from stores.feature_store import open_feature_store
    from stores.graph_store import open_graph_store

    prepared = bench_gpu.prepare(tmp_path)
    stores = (open_graph_store(prepared["graph"]), open_feature_store(prepared["features"]))
    params = {"family": "gnn", "aggr": "sum", "epochs": 1, **bench_gpu.SHAPES[0]}
    args = Namespace(batches=2, sample_threads=1, skip_cpu=False, skip_cuda=False, cpu_steps=1, gpu_steps=2,
                     precision="auto", profile=0)  # fmt: skip
    threads = torch.get_num_threads()
    try:
        row = bench_gpu.measure_shape(stores, bench_gpu.load_splits(prepared), prepared, params, args)
    finally:
        torch.set_num_threads(threads)
    assert row["cpu_core_step_s"] > 0 and row["cpu_core_end_to_end_step_s"] > 0
    assert row["nodes_per_batch"] > params["batch_size"] and row["edges_per_batch"] > 0
    assert {"cpu", "host", "gpu", "dispatch", "gpu_memory_gib"} <= set(row["estimate"])
    assert ("gpu_over_cpu_core" in row) == torch.cuda.is_available()
    assert bench_gpu.markdown_row(row).count("|") == bench_gpu.HEADER.splitlines()[0].count("|")
    assert ("gpu_step_heteroconv_s" in row) == torch.cuda.is_available()


def test_the_sage_schedules_a_b_restores_the_model_it_times(tmp_path: Path):
    bench_gpu = _bench_gpu()
    from models.stacked_sage import StackedSAGEConv
    from stores.feature_store import open_feature_store
    from stores.graph_store import open_graph_store

    prepared = bench_gpu.prepare(tmp_path)
    stores = (open_graph_store(prepared["graph"]), open_feature_store(prepared["features"]))
    splits = bench_gpu.load_splits(prepared)
    params = {"family": "gnn", "aggr": "sum", "epochs": 1, **bench_gpu.SHAPES[0]}
    batches = bench_gpu.sample_batches(stores, splits["train"], params, 2, 1)
    trainer = bench_gpu.make_trainer(stores, splits["train"], prepared["task_type"], params, "cpu")
    args = Namespace(gpu_steps=1, precision="auto")
    row = bench_gpu.sage_schedules(trainer, stores, splits, prepared, params, batches, args)
    assert row["gpu_step_by_relation_s"] > 0 and row["gpu_step_heteroconv_s"] > 0
    layers = [module for module in trainer.model.modules() if isinstance(module, StackedSAGEConv)]
    assert layers and all(layer.schedule == "auto" for layer in layers)
