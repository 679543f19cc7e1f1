"""Serving throughput: `serving.predict.write_predictions` against the training path's own evaluation loop.

For each graph (the embedded F1 database; a synthetic users/items/events graph, 1 M users by default) and
each model family (one small GNN and one small GBDT run, trained by `train_query_model`), the same
(entity, anchor_time) rows are scored twice, each in its own process so that peak RSS is per path:

- serving: `resolve_rows` + `write_predictions` end to end, the published Parquet file included;
- training eval: what `run_gnn_trial` / `run_gbdt_trial` do to score a split: GNN `make_splits` ->
  `MinibatchFetcher(eval_batch_size).epoch(split, epoch_seed=seed, shuffle=False)` -> `Trainer.predict`;
  GBDT `build_relational_features` over every row in one call -> `GBDTModel.predict` (no output file).

Rows: F1 every driver at ``--f1-anchors`` monthly anchors; synthetic every user at one anchor. Prints rows/s
of both paths, their ratio (serving / training eval; the goal is >= 1.0x), both peak RSS, the size of the
stores the path reads (graph + feature store, plus the published tables for GBDT), whether serving scores
equal training-eval scores, and last the worst ratio. Planes are prepared through Dagster in ``--scratch``
(reused by a later run with the same folder).

    .venv/bin/python benchmarks/bench_predict.py                                   # F1 + 1 M users
    .venv/bin/python benchmarks/bench_predict.py --graph synthetic --entities 200000 --events 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

BENCHMARKS = Path(__file__).resolve().parent
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from predict_report import Measured, PathResult, format_table, machine_facts, worst_ratio  # noqa: E402
from predict_setup import (  # noqa: E402
    F1_SPEC,
    SYNTHETIC_QUERY,
    Plane,
    f1_rows,
    open_resources,
    prepare_plane,
    synthetic_rows,
    train_runs,
    write_synthetic_db,
)
from process_memory import peak_rss_gib  # noqa: E402

__all__ = [
    "Measured",
    "PathResult",
    "bench_graph",
    "format_table",
    "measure_path",
    "prepare_graph",
    "score_agreement",
    "store_bytes",
    "worst_ratio",
]

FAMILIES = ("gnn", "gbdt")
PATHS = ("serving", "training")


# -- workers: one scoring pass, run in a fresh process -------------------------------------------------


def run_worker(job: dict[str, Any]) -> PathResult:
    """Score ``job['rows']`` (Parquet of entity, anchor_time) on one path; scores saved to ``job['scores']``."""
    from relational.spec_loader import load_spec
    from serving.served_model import load_member

    imported = peak_rss_gib()
    prepared = Plane(**job["plane"])
    family, path, threads = job["family"], job["path"], job["threads"]
    started = time.perf_counter()
    spec = load_spec(prepared.spec_path)
    plane, graphs, features = open_resources(prepared.root)
    member = load_member(plane, prepared.graph, prepared.query, family, prepared.runs[family])
    rows_in = pl.read_parquet(job["rows"])
    scorer = _serving_scorer if path == "serving" else _training_scorer
    score = scorer(prepared, spec, family, member, rows_in, (plane, graphs, features), threads)
    load_seconds, base = time.perf_counter() - started, peak_rss_gib()
    started = time.perf_counter()
    scores = score()
    seconds = time.perf_counter() - started
    peak = peak_rss_gib()
    np.save(job["scores"], np.asarray(scores, dtype=np.float64).reshape(len(scores), -1)[:, 0])
    return PathResult(path, len(scores), seconds, peak, imported, base, load_seconds, job["scores"])


def _serving_scorer(prepared: Plane, spec, family: str, member, rows_in: pl.DataFrame, resources, threads):
    """The serving path: the scoring data opened as `predict_day` opens it; scoring resolves and writes."""
    from serving.daily import open_scoring_data
    from serving.predict import resolve_rows, write_predictions
    from serving.served_model import ServedModel

    plane, graphs, features = resources
    data = open_scoring_data(spec, plane, graphs, features)
    served = ServedModel(prepared.graph, prepared.query, prepared.task_type, [member], False, None, None)
    target = (prepared.graph, "predictions", prepared.query, f"bench-{family}.parquet")

    def score() -> np.ndarray:
        rows, _ = resolve_rows(rows_in, data, prepared.entity_table)
        run = write_predictions(served, data, rows, lambda path: plane.put_file(path, *target),
                                prepared.entity_table, threads=threads)  # fmt: skip
        return run.scores

    return score


def _training_scorer(prepared: Plane, spec, family: str, member, rows_in: pl.DataFrame, resources, threads):
    """The training path's evaluation of a split holding these rows, as `run_*_trial` scores val/test."""
    plane, graphs, features = resources
    if family == "gnn":
        return _gnn_training_scorer(prepared, member, rows_in, graphs, features, threads)
    from models.propositional import build_relational_features
    from models.propositional_config import PropositionalConfig
    from relational.graph_tables import read_published_tables
    from relational.keys import NODE_ID
    from relational.schema import GraphSchema

    frames, metas = read_published_tables(spec, plane)
    schema = GraphSchema.from_table_metadata(spec, metas)

    def score() -> np.ndarray:
        keys = frames[prepared.entity_table].select(pl.col(prepared.entity_key).alias("entity"), NODE_ID)
        rows = rows_in.join(keys, on="entity", how="left", maintain_order="left")
        # run_gbdt_trial builds every split in one call; its vocabulary cut is the one the model stored
        design = build_relational_features(frames, schema, prepared.entity_table,
                                           rows.select(NODE_ID, "anchor_time"), PropositionalConfig(), None,
                                           member.vocabulary_limit)  # fmt: skip
        return member.model.predict(design)

    return score


def _gnn_training_scorer(prepared: Plane, member, rows_in: pl.DataFrame, graphs, features, threads):
    import torch

    from models.trainer import Trainer
    from stores.fetcher import MinibatchFetcher
    from stores.sampler import SamplerConfig
    from training.trial import make_splits

    if threads is not None:
        torch.set_num_threads(threads)
    graph, stored = graphs.open(prepared.graph), features.open(prepared.graph)
    keys = graphs.node_keys(graph, prepared.entity_table)
    config = member.state["config"]

    def score() -> np.ndarray:
        table = rows_in.with_columns(label=pl.lit(0, pl.Int64), split=pl.lit("val"))
        split = make_splits(table, keys, prepared.entity_table, f"{prepared.graph}/{prepared.query}")["val"]
        model = member.build(dict(graph.node_counts), graph.edge_types, stored.schema["node_types"])
        trainer = Trainer(model, member.trainer_config)
        fetcher = MinibatchFetcher(graph, stored, SamplerConfig(tuple(config["fanouts"]), config["strategy"]),
                                   int(config["eval_batch_size"]), threads=threads)  # fmt: skip
        batches = fetcher.epoch(split, epoch_seed=member.trainer_config.seed, shuffle=False)
        return trainer.predict(batches).output  # what Trainer.evaluate computes its metrics from

    return score


# -- the driver --------------------------------------------------------------------------------------


def measure_path(job: dict[str, Any], isolate: bool = True, timeout: float = 3600.0) -> PathResult:
    """One worker, in a fresh process (``isolate``: its own peak RSS) or in this one (tests)."""
    if not isolate:
        try:
            return run_worker(job)
        except Exception as error:  # reported in the table, not raised: the other paths still run
            return PathResult(job["path"], error=f"{type(error).__name__}: {error}")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        result_path = handle.name
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        json.dumps(job),
        "--result",
        result_path,
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return PathResult(job["path"], error=f"did not finish in {timeout:.0f} s")
    try:
        if done.returncode != 0:
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            why = "killed (out of memory?)" if done.returncode in (-9, 137) else f"exit {done.returncode}"
            return PathResult(job["path"], error=f"{why}: {tail}"[:400])
        return PathResult(**json.loads(Path(result_path).read_text()))
    finally:
        Path(result_path).unlink(missing_ok=True)


def store_bytes(prepared: Plane, family: str) -> int:
    """Bytes on disk of what a family's scoring reads: the graph and feature store versions, and for GBDT
    also the published tables."""
    _, graphs, features = open_resources(prepared.root)
    folders = [graphs.open(prepared.graph).path, features.open(prepared.graph).path]
    if family == "gbdt":
        folders.append(Path(prepared.root) / prepared.graph / "tables")
    return sum(
        path.stat().st_size for folder in folders for path in Path(folder).rglob("*") if path.is_file()
    )


def score_agreement(serving: PathResult, training: PathResult, rtol: float = 1e-6, atol: float = 1e-7) -> str:
    """Whether both paths gave the same score per row (float tolerance), as one short phrase."""
    if serving.error or training.error or not serving.scores or not training.scores:
        return "not compared"
    first, second = np.load(serving.scores), np.load(training.scores)
    if first.shape != second.shape:
        return f"DIFFERENT: {len(first)} vs {len(second)} rows"
    gap = float(np.max(np.abs(first - second))) if len(first) else 0.0
    same = np.allclose(first, second, rtol=rtol, atol=atol)
    return f"{'equal' if same else 'DIFFERENT'} (max |diff| {gap:.1e})"


def bench_graph(prepared: Plane, rows: pl.DataFrame, scratch: Path, families: tuple[str, ...] = FAMILIES,
                threads: int | None = None, isolate: bool = True, log=print, repeats: int = 1) -> list[Measured]:  # fmt: skip
    """Both paths for every family on ``rows``: one table line per family. ``repeats`` > 1 alternates the
    paths that many times and keeps each one's fastest pass (and its highest peak RSS): on a shared machine
    one pass of either path varied by 15-25% from run to run."""
    rows_path = scratch / f"{prepared.graph}-rows.parquet"
    rows.write_parquet(rows_path)
    measured = []
    for family in families:
        results: dict[str, PathResult] = {}
        for _ in range(max(repeats, 1)):
            for path in PATHS:
                job = {"plane": asdict(prepared), "family": family, "path": path, "rows": str(rows_path),
                       "threads": threads, "scores": str(scratch / f"{prepared.graph}-{family}-{path}.npy")}  # fmt: skip
                result = measure_path(job, isolate)
                log(f"  {prepared.graph} {family} {path}: "
                    + (f"{result.rows:,} rows in {result.seconds:.1f} s = {result.rate:,.0f} rows/s, peak RSS "
                       f"{result.peak_rss_gib:.2f} GiB (imports {result.import_rss_gib:.2f} GiB, after loading "
                       f"{result.base_rss_gib:.2f} GiB; loading took {result.load_seconds:.1f} s)"
                       if result.error is None else f"could not run: {result.error}"))  # fmt: skip
                results[path] = _better(results.get(path), result)
        line = Measured(prepared.graph, family, rows.height, results["serving"], results["training"],
                        store_bytes(prepared, family))  # fmt: skip
        line.agreement = score_agreement(line.serving, line.training)
        measured.append(line)
    return measured


def _better(kept: PathResult | None, new: PathResult) -> PathResult:
    """Of two passes of one path: the faster one, with the higher of their peak RSS (a failure only when
    both failed)."""
    if kept is None or kept.error is not None:
        return new
    if new.error is not None:
        return kept
    faster = new if new.seconds < kept.seconds else kept
    return replace(faster, peak_rss_gib=max(kept.peak_rss_gib, new.peak_rss_gib))


def prepare_graph(
    graph: str, scratch: Path, args: argparse.Namespace, log=print
) -> tuple[Plane, pl.DataFrame]:
    """The graph's plane (ingested, stores built, one run per family trained) and the rows to score."""
    from training.run import ModelRunConfig

    configs = {
        "gnn": ModelRunConfig(family="gnn", channels=args.channels, epochs=1, max_steps_per_epoch=args.gnn_steps,
                              device="cpu", batch_size=512, threads=args.threads or None),
        "gbdt": ModelRunConfig(family="gbdt", gbdt_trees=args.trees),
    }  # fmt: skip
    configs = {family: configs[family] for family in args.families}
    if graph == "f1":
        prepared = prepare_plane(F1_SPEC, "driver_dnf", scratch / "f1", log)
        prepared = train_runs(prepared, configs, log)
        return prepared, f1_rows(prepared, args.f1_anchors)
    root = scratch / f"synthetic-{args.entities}-{args.items}-{args.events}"
    spec_path = root / "db" / "graph.yaml"
    if not spec_path.is_file():
        started = time.perf_counter()
        write_synthetic_db(root / "db", args.entities, args.items, args.events)
        log(f"  synthetic: {args.entities:,} users, {args.items:,} items, {args.events:,} events written in "
            f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    prepared = train_runs(prepare_plane(spec_path, SYNTHETIC_QUERY, root, log), configs, log)
    return prepared, synthetic_rows(prepared)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graph", default="both", choices=["f1", "synthetic", "both"])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--entities", type=int, default=1_000_000, help="synthetic users (all scored)")
    parser.add_argument("--items", type=int, default=100_000, help="synthetic items")
    parser.add_argument("--events", type=int, default=5_000_000, help="synthetic events")
    parser.add_argument("--f1-anchors", type=int, default=36, help="monthly anchors from 2005 (every driver)")
    parser.add_argument("--channels", type=int, default=32, help="GNN width")
    parser.add_argument("--gnn-steps", type=int, default=20, help="GNN training steps (one epoch)")
    parser.add_argument("--trees", type=int, default=100, help="GBDT trees")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for sampling and torch in both paths (0: torch's default, every core). 1 by default: "
        "train_query_model gives a trial cores // 2 (1 on 2 cores), and torch's spinning OpenMP threads on a "
        "shared 2-core machine made one scoring pass 2-25x slower from one run to the next",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="passes of each path, alternating; the fastest is reported"
    )
    parser.add_argument("--scratch", help="folder for planes and outputs (kept; reused by the next run)")
    parser.add_argument("--prepare", help=argparse.SUPPRESS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        try:
            result = run_worker(json.loads(args.worker))
        except Exception:
            traceback.print_exc()
            raise SystemExit(1) from None
        Path(args.result).write_text(json.dumps(asdict(result)))
        return
    if args.prepare:
        prepare_graph(args.prepare, Path(args.scratch), args, lambda text: print(text, flush=True))
        return
    started = time.perf_counter()
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="kumo-bench-predict-"))
    scratch.mkdir(parents=True, exist_ok=True)
    print(f"scratch {scratch}; {machine_facts(args.threads or None)}", flush=True)
    measured: list[Measured] = []
    for graph in ["f1", "synthetic"] if args.graph == "both" else [args.graph]:
        print(f"{graph}: preparing", flush=True)
        # in a child process, so this driver stays small while the workers run; then reread here
        command = [sys.executable, str(Path(__file__).resolve()), *(sys.argv[1:] if argv is None else argv),
                   "--prepare", graph, "--scratch", str(scratch)]  # fmt: skip
        if subprocess.run(command).returncode != 0:
            raise SystemExit(f"preparing {graph} failed (see above)")
        prepared, rows = prepare_graph(graph, scratch, args, lambda text: print(text, flush=True))
        print(f"{graph}: scoring {rows.height:,} rows ({rows['anchor_time'].n_unique()} anchors)", flush=True)
        measured += bench_graph(prepared, rows, scratch, tuple(args.families), args.threads or None,
                                log=lambda text: print(text, flush=True), repeats=args.repeats)  # fmt: skip
    print()
    print("\n".join(format_table(measured)))
    print(f"scores: serving vs training eval on the same rows, rtol 1e-6 / atol 1e-7; wall "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    print(worst_ratio(measured))


if __name__ == "__main__":
    main()
