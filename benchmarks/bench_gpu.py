"""The trainer's step throughput on a GPU beside one CPU core, and the GPU side of the provisioner's estimate.

On F1 driver_dnf, for each GNN shape of the provisioner's calibration set: the real fetcher samples a fixed
set of training batches once, then the trainer's step (host-to-device copy, forward, loss, backward,
gradient clipping, Adam) is timed over them on one CPU thread and on the GPU: the ratio is the issue's
">= 20x" figure. Beside it: the end-to-end rate with sampling in the loop (the data path's bound), peak
device memory against `estimate_trial`'s ``gpu_memory_gib``, and the measured device step against
`training_step_seconds`'s GPU step (a speed-1 GPU's work or the host's kernel dispatch, the longer).

    python benchmarks/bench_gpu.py                      # every shape, CPU core and (when present) CUDA
    python benchmarks/bench_gpu.py --only 0 1 --json out.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from calibrate_provisioner import CONFIGS, SEED_TYPE, data_stats, prepare  # noqa: E402
from process_memory import GIB, peak_rss_gib  # noqa: E402

SHAPES = [config for config in CONFIGS if config.get("family", "gnn") == "gnn"]


def load_splits(prepared: dict) -> dict:
    from stores.fetcher import TrainingSplit

    arrays = np.load(prepared["splits"])
    return {name: TrainingSplit(str(arrays[f"{name}.name"]), SEED_TYPE, arrays[f"{name}.seeds"],
                                arrays[f"{name}.times"], arrays[f"{name}.labels"])
            for name in ("train", "val", "test")}  # fmt: skip


def sample_batches(stores: tuple, split, params: dict, count: int, threads: int) -> list:
    """``count`` training batches of ``params``' shape from the real fetcher (cycled when the epoch is short)."""
    from stores.fetcher import MinibatchFetcher
    from stores.sampler import SamplerConfig

    graph, features = stores
    fetcher = MinibatchFetcher(graph, features, SamplerConfig(tuple(params["fanouts"])), params["batch_size"],
                               prefetch=0, threads=threads)  # fmt: skip
    return list(itertools.islice(fetcher.epoch(split, epoch_seed=0), count))


def make_trainer(stores: tuple, split, task_type: str, params: dict, device: str, precision: str = "auto"):
    from models.gnn import GNNConfig, RelationalGNN
    from models.heads import TaskSpec
    from models.trainer import Trainer, TrainerConfig, seed_everything

    graph, features = stores
    seed_everything(0)
    model = RelationalGNN(
        list(graph.node_counts), graph.edge_types, features.schema["node_types"], SEED_TYPE,
        TaskSpec.from_labels(task_type, split.labels),
        GNNConfig(conv=params["conv"], channels=params["channels"], layers=params["layers"],
                  aggr=params.get("aggr", "sum"), dropout=0.0, stacked=params.get("stacked", True)),
        graph.node_counts,
    )  # fmt: skip
    settings = TrainerConfig(device=device, precision=precision, patience=0, max_steps_per_epoch=10**9)
    return Trainer(model, settings)


def profile_steps(trainer, batches: list, steps: int) -> str:
    """Where a GPU step's time goes: torch.profiler's ops by host time, and kernels launched per step."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        trainer.train_epoch(itertools.islice(itertools.cycle(batches), steps))
        torch.cuda.synchronize()
    events = prof.key_averages()
    launches = sum(
        e.count for e in events if e.key in {"cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"}
    )
    copies = sum(e.count for e in events if e.key.startswith("cudaMemcpy"))
    syncs = sum(e.count for e in events if "Synchronize" in e.key)
    summary = f"per step: {launches / steps:.0f} kernel launches, {copies / steps:.0f} copies, {syncs / steps:.1f} syncs"
    return summary + "\n" + events.table(sort_by="self_cpu_time_total", row_limit=30)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(trainer, batches: list, steps: int, warmup: int) -> float:
    """Seconds per trainer step over pre-sampled ``batches`` (the model's work and the copy to the device)."""
    device = str(trainer.device)
    trainer.train_epoch(itertools.islice(itertools.cycle(batches), warmup))
    _sync(device)
    started = time.perf_counter()
    trainer.train_epoch(itertools.islice(itertools.cycle(batches), steps))
    _sync(device)
    return (time.perf_counter() - started) / steps


def time_end_to_end(trainer, stores: tuple, split, params: dict, steps: int, threads: int) -> float:
    """Seconds per step with the fetcher sampling in the loop (its background prefetch on)."""
    from stores.fetcher import MinibatchFetcher
    from stores.sampler import SamplerConfig

    graph, features = stores
    fetcher = MinibatchFetcher(graph, features, SamplerConfig(tuple(params["fanouts"])), params["batch_size"],
                               threads=threads)  # fmt: skip
    batches = itertools.chain.from_iterable(fetcher.epoch(split, epoch_seed=e) for e in itertools.count(1))
    started = time.perf_counter()
    trainer.train_epoch(itertools.islice(batches, steps))
    _sync(str(trainer.device))
    return (time.perf_counter() - started) / steps


def measure_shape(stores: tuple, splits: dict, prepared: dict, params: dict, args) -> dict:
    """One shape: step seconds on a CPU core and on the GPU, end-to-end rates, device memory."""
    from cluster.trial_estimate import estimate_trial, training_step_seconds

    stats = data_stats(prepared)
    row: dict = {"params": params, "estimate": {**training_step_seconds(params, stats),
                                                "gpu_memory_gib": estimate_trial(params, stats).gpu_memory_gib}}  # fmt: skip
    batches = sample_batches(stores, splits["train"], params, args.batches, args.sample_threads)
    row["nodes_per_batch"] = float(np.mean([batch.num_nodes for batch in batches]))
    row["edges_per_batch"] = float(np.mean([batch.num_edges for batch in batches]))
    if not args.skip_cpu:
        torch.set_num_threads(1)
        trainer = make_trainer(stores, splits["train"], prepared["task_type"], params, "cpu")
        row["cpu_core_step_s"] = time_steps(trainer, batches, args.cpu_steps, warmup=1)
        row["cpu_core_end_to_end_step_s"] = time_end_to_end(trainer, stores, splits["train"], params,
                                                             args.cpu_steps, threads=1)  # fmt: skip
        torch.set_num_threads(args.sample_threads)
    if torch.cuda.is_available() and not args.skip_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        trainer = make_trainer(stores, splits["train"], prepared["task_type"], params, "cuda", args.precision)
        row["gpu_step_s"] = time_steps(trainer, batches, args.gpu_steps, warmup=3)
        if args.profile:
            print(profile_steps(trainer, batches, args.profile), flush=True)
        row["gpu_peak_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
        row["gpu_peak_reserved_gib"] = torch.cuda.max_memory_reserved() / GIB
        free, total = torch.cuda.mem_get_info()
        # what the process holds beyond the caching allocator's pool: the CUDA context and libraries
        row["gpu_context_gib"] = (total - free - torch.cuda.memory_reserved()) / GIB
        # the process's peak so far (shapes run in order): the host memory beside a GPU that the estimate's
        # BASE_HOST_GPU_GIB assumes (a CUDA build of torch maps its libraries)
        row["host_peak_rss_gib"] = peak_rss_gib()
        row["gpu_end_to_end_step_s"] = time_end_to_end(trainer, stores, splits["train"], params,
                                                       args.gpu_steps, threads=args.sample_threads)  # fmt: skip
        # the estimate's GPU step: the device's work (speed-1 GPU) or the host's dispatch, whichever is longer
        row["estimated_gpu_step_s"] = max(row["estimate"]["gpu"], row["estimate"]["dispatch"])
        if params["conv"] == "sage":
            row.update(sage_schedules(trainer, stores, splits, prepared, params, batches, args))
        del trainer
    if "cpu_core_step_s" in row and "gpu_step_s" in row:
        row["gpu_over_cpu_core"] = row["cpu_core_step_s"] / row["gpu_step_s"]
        row["end_to_end_gpu_over_cpu_core"] = row["cpu_core_end_to_end_step_s"] / row["gpu_end_to_end_step_s"]
    return row


def sage_schedules(trainer, stores, splits, prepared, params, batches, args) -> dict:
    """The same SAGE step with stacked SAGE's per-relation schedule and with PyG's HeteroConv of SAGEConv, on
    ``trainer``'s device (on CUDA it runs the stacked schedule): what stacking the relations saves there."""
    from models.stacked_sage import StackedSAGEConv

    layers = [module for module in trainer.model.modules() if isinstance(module, StackedSAGEConv)]
    for layer in layers:
        layer.schedule = "relation"
    by_relation = time_steps(trainer, batches, args.gpu_steps, warmup=3)
    for layer in layers:
        layer.schedule = "auto"
    reference = make_trainer(stores, splits["train"], prepared["task_type"], {**params, "stacked": False},
                             str(trainer.device), args.precision)  # fmt: skip
    return {"gpu_step_by_relation_s": by_relation,
            "gpu_step_heteroconv_s": time_steps(reference, batches, args.gpu_steps, warmup=3)}  # fmt: skip


def schedules_line(row: dict) -> str | None:
    if "gpu_step_heteroconv_s" not in row:
        return None
    return (f"  GPU ms/step of this SAGE shape: stacked {row['gpu_step_s'] * 1e3:.2f}, by relation "
            f"{row['gpu_step_by_relation_s'] * 1e3:.2f}, PyG HeteroConv {row['gpu_step_heteroconv_s'] * 1e3:.2f} "
            f"({row['gpu_step_heteroconv_s'] / row['gpu_step_s']:.2f}x)")  # fmt: skip


def _cell(row: dict, key: str, scale: float = 1.0, digits: int = 1) -> str:
    return f"{row[key] * scale:,.{digits}f}" if key in row else "-"


HEADER = (
    "| conv | ch | layers | batch | fanouts | nodes/batch | CPU core ms/step | GPU ms/step | GPU / core "
    "| end-to-end CPU ms | end-to-end GPU ms | e2e ratio | GPU peak GiB (reserved + context) | est. GiB "
    "| est. GPU ms (device, dispatch) | est. / meas. |\n|" + "---|" * 16
)


def markdown_row(row: dict) -> str:
    p = row["params"]
    memory = ratio = "-"
    if "gpu_step_s" in row:
        ratio = f"{row['estimated_gpu_step_s'] / row['gpu_step_s']:.2f}"
    if "gpu_peak_reserved_gib" in row:
        memory = f"{row['gpu_peak_reserved_gib'] + row['gpu_context_gib']:.2f}"
    return (f"| {p['conv']} | {p['channels']} | {p['layers']} | {p['batch_size']} | {p['fanouts']} "
            f"| {row['nodes_per_batch']:,.0f} | {_cell(row, 'cpu_core_step_s', 1e3)} | {_cell(row, 'gpu_step_s', 1e3, 2)} "
            f"| {_cell(row, 'gpu_over_cpu_core')}x | {_cell(row, 'cpu_core_end_to_end_step_s', 1e3)} "
            f"| {_cell(row, 'gpu_end_to_end_step_s', 1e3, 2)} | {_cell(row, 'end_to_end_gpu_over_cpu_core')}x "
            f"| {memory} | {row['estimate']['gpu_memory_gib']:.2f} "
            f"| {row['estimate']['gpu'] * 1e3:.1f}, {row['estimate']['dispatch'] * 1e3:.1f} | {ratio} |")  # fmt: skip


def describe_machine() -> dict:
    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "torch": torch.__version__}  # fmt: skip
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        machine.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / GIB, 1),
                       multiprocessors=props.multi_processor_count, bf16=torch.cuda.is_bf16_supported())  # fmt: skip
    return machine


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--only", type=int, nargs="+", help="these shapes (indices into SHAPES)")
    parser.add_argument("--batches", type=int, default=8, help="pre-sampled batches the steps cycle over")
    parser.add_argument("--cpu-steps", type=int, default=4)
    parser.add_argument("--gpu-steps", type=int, default=40)
    parser.add_argument("--sample-threads", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument(
        "--precision", default="auto", choices=["auto", "tf32", "bf16", "fp32"], help="the GPU trainer's"
    )
    parser.add_argument("--profile", type=int, default=0, help="profile this many GPU steps per shape")
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--skip-cuda", action="store_true")
    parser.add_argument("--scratch", default=os.environ.get("KUMO_BENCH_CACHE", ""))
    parser.add_argument("--json", help="append each row here as a JSON line")
    args = parser.parse_args()
    from stores.feature_store import open_feature_store
    from stores.graph_store import open_graph_store

    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="kumo-bench-gpu-"))
    scratch.mkdir(parents=True, exist_ok=True)
    prepared = prepare(scratch)
    stores = (open_graph_store(prepared["graph"]), open_feature_store(prepared["features"]))
    splits = load_splits(prepared)
    print("machine:", json.dumps(describe_machine()), flush=True)
    print(HEADER, flush=True)
    failures = 0
    for index in args.only if args.only is not None else range(len(SHAPES)):
        params = {"family": "gnn", "aggr": "sum", "epochs": 1, **SHAPES[index]}
        try:
            row = measure_shape(stores, splits, prepared, params, args)
        except Exception:  # one shape's failure (say, out of memory) must not hide the others' numbers
            failures += 1
            print(f"shape {index} {params} failed:\n{traceback.format_exc()}", flush=True)
            continue
        print(markdown_row(row), flush=True)
        if schedules_line(row):
            print(schedules_line(row), flush=True)
        if args.json:
            with open(args.json, "a") as out:
                out.write(json.dumps({"machine": describe_machine(), **row}) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
