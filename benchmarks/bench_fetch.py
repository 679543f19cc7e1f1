"""Feature gathers and the shared minibatch fetcher, measured against their baselines in the same run.

(a) gather rows/s of the fetcher's feature gather (`gather_rows`: memory map -> new array, parallel copy
    for big batches) vs torch.index_select into a preallocated
    buffer, same data; (b) 4 and 8 concurrent trial processes pulling the same epoch of F1 driver_dnf
    through the shared fetcher: sampler invocations, hit rate, extra RSS per trial / store size, batches/s
    against one process alone; (c) the share of a CPU training step spent waiting on data, prefetch on/off.

    .venv/bin/python benchmarks/bench_fetch.py
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from torch_geometric.nn import HeteroConv, SAGEConv  # noqa: E402

from relational.graph_tables import ingest_in_memory  # noqa: E402
from relational.pql.queries import load_queries  # noqa: E402
from relational.pql.training_table import build_training_table  # noqa: E402
from relational.schema import GraphSchema  # noqa: E402
from relational.spec_loader import load_spec  # noqa: E402
from stores.batch_cache import BatchCache  # noqa: E402
from stores.feature_store import build_feature_store, gather_rows, open_feature_store  # noqa: E402
from stores.fetcher import MinibatchFetcher, TrainingSplit  # noqa: E402
from stores.graph_store import open_graph_store  # noqa: E402
from stores.sampler import SamplerConfig  # noqa: E402
from stores.store_inputs import (  # noqa: E402
    build_graph_from_tables,
    node_tables,
)

SAMPLING = SamplerConfig((64, 32), "uniform")
BATCH = 512


def gather_benchmark() -> float:
    rows, width, batch = 2_000_000, 32, 65_536
    with tempfile.TemporaryDirectory() as scratch:
        data = pl.DataFrame({f"c{i}": np.random.default_rng(i).normal(size=rows) for i in range(width // 2)})
        stypes = {column: {"stype": "numerical"} for column in data.columns}
        build_feature_store(
            scratch, {"items": node_tables({"items": data}, {"items": {"stypes": stypes}}, None)["items"]}
        )
        stored = open_feature_store(scratch)
        mapped = stored.blocks[("items", "numerical")]
        source = torch.from_numpy(np.array(stored.blocks[("items", "numerical")]))  # in memory, for torch
        out = torch.empty((batch, source.shape[1]), dtype=source.dtype)
        indices = [torch.from_numpy(np.random.default_rng(i).integers(0, rows, batch)) for i in range(30)]
        for index in indices[:3]:
            torch.from_numpy(gather_rows(mapped, index.numpy()))  # what the fetcher does
            torch.index_select(source, 0, index, out=out)
        best = {"ours": 0.0, "torch": 0.0}
        for _ in range(3):
            started = time.perf_counter()
            for index in indices:
                torch.from_numpy(gather_rows(mapped, index.numpy()))  # what the fetcher does
            best["ours"] = max(best["ours"], len(indices) * batch / (time.perf_counter() - started))
            started = time.perf_counter()
            for index in indices:
                torch.index_select(source, 0, index, out=out)
            best["torch"] = max(best["torch"], len(indices) * batch / (time.perf_counter() - started))
    print(f"(a) gather {rows:,} x {source.shape[1]} float32, batches of {batch:,} random rows, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"    ours (gather_rows from the memory map, as the fetcher) {best['ours'] / 1e6:.1f} M rows/s; torch.index_select "
          f"{best['torch'] / 1e6:.1f} M rows/s; ratio {best['ours'] / best['torch']:.2f}")  # fmt: skip
    return best["ours"] / best["torch"]


def prepare(scratch: Path) -> dict:
    spec = load_spec(ROOT / "kumo_assets" / "examples" / "f1" / "graph.yaml")
    built = ingest_in_memory(spec)
    frames = {name: table.frame for name, table in built.items()}
    build_graph_from_tables(spec, frames, scratch / "graph")
    metas = {name: table.meta for name, table in built.items()}
    build_feature_store(scratch / "features", node_tables(frames, metas, 1104537600))
    query = load_queries(spec.path.parent / "queries.yaml")["driver_dnf"]
    table = build_training_table(
        query.text, GraphSchema.from_built_tables(spec, built), frames, query.anchors
    ).table
    train = table.filter(pl.col("split") == "train")
    node_of = dict(
        zip(frames["drivers"]["driverId"].to_list(), frames["drivers"]["_kumo_id"].to_list(), strict=True)
    )
    return {
        "seeds": np.array([node_of[e] for e in train["entity"].to_list()], dtype=np.int64),
        "times": train["anchor_time"].to_numpy(),
        "labels": train["label"].to_numpy(),
    }


def open_fetcher(scratch: str, cache: bool, prefetch: int = 2) -> tuple[MinibatchFetcher, TrainingSplit]:
    data = np.load(Path(scratch) / "split.npz")
    split = TrainingSplit("f1/driver_dnf/train", "drivers", data["seeds"], data["times"], data["labels"])
    fetcher = MinibatchFetcher(
        open_graph_store(Path(scratch) / "graph"), open_feature_store(Path(scratch) / "features"), SAMPLING, BATCH,
        BatchCache(Path(scratch) / "cache") if cache else None, prefetch=prefetch, threads=1,
    )  # fmt: skip
    return fetcher, split


def rss_anon_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon"))


_START: multiprocessing.synchronize.Barrier | None = None  # every trial process waits at it, then pulls


def start_together(barrier) -> None:
    global _START
    _START = barrier


def trial(scratch: str) -> dict:
    fetcher, split = open_fetcher(scratch, cache=True, prefetch=0)
    # a fresh process: load the compiled kernels and touch the stores before the clock starts
    warm, _ = open_fetcher(scratch, cache=False, prefetch=0)
    next(iter(warm.epoch(split, epoch_seed=99)))
    before = rss_anon_kib()
    _START.wait()
    started = time.perf_counter()
    batches = sum(1 for _ in fetcher.epoch(split, epoch_seed=11))
    return {
        "seconds": time.perf_counter() - started,
        "batches": batches,
        "invocations": fetcher.sampler_invocations,
        "hits": fetcher.cache.stats.hits,
        "misses": fetcher.cache.stats.misses,
        "extra_rss_kib": rss_anon_kib() - before,
    }


def concurrency_benchmark(scratch: Path) -> None:
    store_bytes = sum(path.stat().st_size for path in scratch.rglob("*.npy"))
    print(f"(b) shared fetcher, F1 driver_dnf train split, batch {BATCH}, fanouts {list(SAMPLING.fanouts)}; "
          f"stores {store_bytes / 2**20:.1f} MiB")  # fmt: skip
    # Not "fork": (a) started OpenMP's threads in this process (the parallel gather), and GNU OpenMP aborts
    # a child forked after that ("fork() called from a process already using GNU OpenMP").
    context = multiprocessing.get_context("forkserver")
    baseline = None
    for processes in (1, 4, 8):
        for entry in (scratch / "cache").glob("*") if (scratch / "cache").exists() else []:
            entry.unlink()
        with context.Pool(processes, start_together, (context.Barrier(processes),)) as pool:
            results = pool.map(trial, [str(scratch)] * processes)
        wall = max(result["seconds"] for result in results)  # from the barrier to the last one done
        batches = sum(result["batches"] for result in results)
        invocations = sum(result["invocations"] for result in results)
        hits, misses = sum(r["hits"] for r in results), sum(r["misses"] for r in results)
        extra = max(result["extra_rss_kib"] for result in results) * 1024 / store_bytes
        rate = batches / wall
        baseline = baseline or rate
        print(f"    {processes} process(es): {batches} batches in {wall:.2f} s = {rate:.1f} batches/s "
              f"({rate / baseline:.2f}x one process); sampler invocations {invocations} "
              f"(of {batches} batches); hit rate {hits / max(hits + misses, 1):.1%}; "
              f"extra RSS per trial {extra:.1%} of the stores")  # fmt: skip


def waiting_benchmark(scratch: Path) -> None:
    print("(c) share of a CPU training step spent waiting for data (2-layer hetero GraphSAGE, 64 channels)")
    for prefetch in (0, 2):
        fetcher, split = open_fetcher(str(scratch), cache=False, prefetch=prefetch)
        model, optimiser = None, None
        waited = computed = 0.0
        iterator = fetcher.epoch(split, epoch_seed=3)
        while True:
            started = time.perf_counter()
            batch = next(iterator, None)
            waited += time.perf_counter() - started
            if batch is None:
                break
            started = time.perf_counter()
            x = {t: torch.cat([batch[t].numerical, torch.ones(batch[t].num_nodes, 1)], 1) if "numerical" in batch[t]
                 else torch.ones(batch[t].num_nodes, 1) for t in batch.node_types}  # fmt: skip
            if model is None:
                convs = {et: SAGEConv((-1, -1), 64) for et in batch.edge_types}
                model = torch.nn.ModuleList([HeteroConv(convs, aggr="sum"), HeteroConv(
                    {et: SAGEConv((-1, -1), 64) for et in batch.edge_types}, aggr="sum")])  # fmt: skip
                model[0](x, batch.edge_index_dict)
                optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
            hidden = model[0](x, batch.edge_index_dict)
            hidden = {t: h.relu() for t, h in hidden.items()}
            for t in x:
                hidden.setdefault(t, torch.zeros(x[t].shape[0], 64))
            out = model[1](hidden, batch.edge_index_dict)["drivers"][: batch["drivers"].batch_size].mean(1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(out, batch["drivers"].y.float())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            computed += time.perf_counter() - started
        print(f"    prefetch {prefetch}: waiting {waited:.2f} s of {waited + computed:.2f} s "
              f"= {waited / (waited + computed):.1%}")  # fmt: skip


def main() -> None:
    ratio = gather_benchmark()  # both sides use every core: torch's default threads, numba's prange
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        np.savez(scratch / "split.npz", **prepare(scratch))
        concurrency_benchmark(scratch)
        waiting_benchmark(scratch)
    print(f"gather ratio ours/torch.index_select: {ratio:.2f}")


if __name__ == "__main__":
    main()
