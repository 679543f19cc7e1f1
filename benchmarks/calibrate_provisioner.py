"""Calibrate the provisioner's trial estimate (cluster/trial_estimate.py) against real F1 trials on this CPU.

Each configuration trains one epoch of a few steps of the driver_dnf GNN in its own process (one thread,
OMP_NUM_THREADS=1), which reports its own peak RSS (VmHWM: see `peak_rss_gib`) and how long the trial took;
the parent measures the sampled subgraph sizes and prints measured beside estimated, plus least-squares time
coefficients to copy into trial_estimate.py. docs/provisioner.md keeps the last run's table.

    .venv/bin/python benchmarks/calibrate_provisioner.py            # every configuration (~3 minutes)
    .venv/bin/python benchmarks/calibrate_provisioner.py --quick    # two of them
    .venv/bin/python benchmarks/calibrate_provisioner.py --only 0 8 --warm   # forked as the trial server does
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from process_memory import peak_rss_gib, rusage_gib, status_gib  # noqa: E402

QUERY = "driver_dnf"
SEED_TYPE = "drivers"
BASE = {"family": "gnn", "aggr": "sum", "dropout": 0.0, "epochs": 1, "lr": 0.005, "max_steps_per_epoch": 4}
CONFIGS = [
    {"conv": "sage", "channels": 32, "layers": 2, "batch_size": 128, "fanouts": [8, 4]},
    {"conv": "sage", "channels": 64, "layers": 2, "batch_size": 512, "fanouts": [16, 8]},
    {"conv": "sage", "channels": 128, "layers": 2, "batch_size": 512, "fanouts": [128, 64]},
    {"conv": "gin", "channels": 128, "layers": 2, "batch_size": 512, "fanouts": [32, 16]},
    {"conv": "gatv2", "channels": 64, "layers": 2, "batch_size": 512, "fanouts": [32, 16]},
    {"conv": "hgt", "channels": 64, "layers": 2, "batch_size": 256, "fanouts": [16, 8]},
    {"conv": "sage", "channels": 128, "layers": 3, "batch_size": 512, "fanouts": [16, 8, 4]},
    {"conv": "sage", "channels": 256, "layers": 3, "batch_size": 256, "fanouts": [16, 8, 4]},
    {"family": "gbdt", "gbdt_trees": 300, "gbdt_leaves": 31, "gbdt_learning_rate": 0.05},
]


def prepare(scratch: Path) -> dict:
    """Build the F1 stores and the driver_dnf splits under ``scratch`` (reused when already there)."""
    from f1_setup import driver_keys, f1_setup

    from training.trial import make_splits

    previous = os.environ.get("KUMO_BENCH_CACHE")
    os.environ["KUMO_BENCH_CACHE"] = str(scratch)  # where f1_setup builds the stores
    try:
        setup = f1_setup([QUERY])
    finally:
        if previous is None:
            os.environ.pop("KUMO_BENCH_CACHE")
        else:
            os.environ["KUMO_BENCH_CACHE"] = previous
    splits = make_splits(setup.tables[QUERY], driver_keys(setup), SEED_TYPE, f"f1/{QUERY}")
    arrays = {}
    for name, split in splits.items():
        arrays.update({f"{name}.seeds": split.seeds, f"{name}.times": split.seed_times,
                       f"{name}.labels": split.labels, f"{name}.name": np.array(split.name)})  # fmt: skip
    np.savez(scratch / "splits.npz", **arrays)
    prepared = {
        "scratch": str(scratch),
        "graph": str(scratch / "graph"),
        "features": str(scratch / "features"),
        "splits": str(scratch / "splits.npz"),
        "task_type": setup.task_types[QUERY],
        "train_rows": len(splits["train"].seeds),
        "eval_rows": len(splits["val"].seeds) + len(splits["test"].seeds),
    }
    (scratch / "ready.json.tmp").write_text(json.dumps(prepared))
    (scratch / "ready.json.tmp").rename(scratch / "ready.json")  # a trial launched early waits for it
    return prepared


def data_stats(prepared: dict):
    """The F1 `DataStats` the estimate sees for the prepared stores."""
    from cluster.data_stats import DataStats
    from stores.feature_store import open_feature_store
    from stores.graph_store import open_graph_store

    graph, features = open_graph_store(prepared["graph"]), open_feature_store(prepared["features"])
    return DataStats.from_stores(graph, features, prepared["train_rows"], prepared["eval_rows"], SEED_TYPE)


def launch(params: dict, scratch: str | Path, warm: bool = False) -> subprocess.Popen:
    """Start one trial in a fresh process (``warm``: forked from a warm trial server, see `warm_child`). It
    imports while `prepare` may still be building ``scratch``, and trains once ``ready.json`` appears there
    (the calibration test overlaps the two to stay short)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
           "KUMO_BENCH_CACHE": str(scratch)}  # fmt: skip
    payload = json.dumps({"params": params, "scratch": str(scratch)})
    launcher_peak = peak_rss_gib()  # what the child's ru_maxrss starts from (see peak_rss_gib)
    flag = "--warm-child" if warm else "--child"
    process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), flag, payload],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    process.launcher_peak_rss_gib = launcher_peak  # type: ignore[attr-defined]
    return process


def collect(process: subprocess.Popen, timeout: float = 600) -> dict:
    """Wait for a launched trial: its own peak RSS (GiB), seconds (imports apart from training), and for the
    record its ``ru_maxrss`` beside the launcher's peak when it started (the figure ru_maxrss inherits)."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    if process.returncode:
        raise RuntimeError(f"calibration trial failed ({process.args[-1]}):\n{stderr[-3000:]}")
    report = json.loads(stdout.strip().splitlines()[-1])
    report["launcher_peak_rss_gib"] = getattr(process, "launcher_peak_rss_gib", None)
    return report


def measure(params: dict, prepared: dict, timeout: float = 600, warm: bool = False) -> dict:
    """Run one trial in a fresh process on prepared stores and report what it used."""
    return collect(launch(params, prepared["scratch"], warm), timeout)


def _wait_ready(scratch: str, timeout: float = 600) -> dict:
    ready = Path(scratch) / "ready.json"
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{ready} did not appear: run prepare() on {scratch}")
        time.sleep(0.05)
    return json.loads(ready.read_text())


def sampled_sizes(params: dict, prepared: dict, batches: int = 4) -> tuple[float, float]:
    """Mean (nodes, edges) per training batch the real sampler draws for ``params``."""
    from stores.graph_store import open_graph_store
    from stores.sampler import SamplerConfig, TemporalSampler

    graph = open_graph_store(prepared["graph"])
    arrays = np.load(prepared["splits"])
    seeds, times = arrays["train.seeds"], arrays["train.times"]
    sampler = TemporalSampler(graph, SamplerConfig(tuple(params["fanouts"])), threads=1)
    rng = np.random.default_rng(0)
    nodes = edges = 0
    for index in range(batches):
        pick = rng.choice(len(seeds), min(params["batch_size"], len(seeds)), replace=False)
        out = sampler.sample(SEED_TYPE, seeds[pick], times[pick], rng_seed=index)
        nodes += sum(len(ids) for ids in out.node.values())
        edges += sum(len(rows) for rows in out.row.values())
    return nodes / batches, edges / batches


def child(payload: dict) -> None:
    """The measured process: open the stores, train, report peak RSS and timings as one JSON line."""
    if payload["params"]["family"] == "gbdt":
        child_gbdt(payload)
        return
    started = time.perf_counter()
    import torch

    from models.gnn import GNNConfig
    from models.trainer import TrainerConfig
    from stores.feature_store import open_feature_store
    from stores.fetcher import TrainingSplit
    from stores.graph_store import open_graph_store
    from stores.sampler import SamplerConfig, TemporalSampler
    from training.trial import GNNTrialConfig, run_gnn_trial

    torch.set_num_threads(1)
    imported = time.perf_counter()
    params = payload["params"]
    payload = {**payload, **_wait_ready(payload["scratch"])}
    graph, features = open_graph_store(payload["graph"]), open_feature_store(payload["features"])
    arrays = np.load(payload["splits"])
    splits = {name: TrainingSplit(str(arrays[f"{name}.name"]), SEED_TYPE, arrays[f"{name}.seeds"],
                                  arrays[f"{name}.times"], arrays[f"{name}.labels"])
              for name in ("train", "val", "test")}  # fmt: skip
    config = GNNTrialConfig(
        GNNConfig(conv=params["conv"], channels=params["channels"], layers=params["layers"],
                  aggr=params.get("aggr", "sum"), dropout=params.get("dropout", 0.0)),
        TrainerConfig(epochs=params["epochs"], lr=params.get("lr", 0.005),
                      max_steps_per_epoch=params["max_steps_per_epoch"], device="cpu", patience=0),
        fanouts=tuple(params["fanouts"]), batch_size=params["batch_size"],
    )  # fmt: skip
    # the compiled sampler loads on first use: part of the base
    TemporalSampler(graph, SamplerConfig((1,)), threads=1).sample(SEED_TYPE, splits["train"].seeds[:1])
    base = peak_rss_gib()
    trained = time.perf_counter()
    result = run_gnn_trial(graph, features, splits, payload["task_type"], config, threads=1)
    finished = time.perf_counter()
    print(json.dumps({"peak_rss_gib": peak_rss_gib(), "base_rss_gib": base, "ru_maxrss_gib": rusage_gib(),
                      "import_seconds": imported - started, "trial_seconds": finished - trained,
                      "fit_seconds": result.fit.seconds, "steps": result.fit.steps,
                      **payload.get("extra", {})}))  # fmt: skip


def warm_child(payload: dict) -> None:
    """The trial as the local launcher's warm start runs it: import what `training.trial_server` preloads,
    fork, and run the trial in the child, whose report adds the server's resident set at the fork."""
    from training.trial_server import _preload

    _preload()
    server = status_gib("VmRSS")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            child({**payload, "extra": {"server_rss_gib": server}})
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))


def child_gbdt(payload: dict) -> None:
    """A GBDT trial: the validated tables in memory (as the trial reads them), propositionalise, fit."""
    started = time.perf_counter()
    from f1_setup import TEST_TIMESTAMP, f1_setup

    from models.gbdt import GBDTConfig
    from training.trial import run_gbdt_trial

    imported = time.perf_counter()
    _wait_ready(payload["scratch"])
    setup = f1_setup([QUERY])
    base = peak_rss_gib()
    params = payload["params"]
    config = GBDTConfig(n_estimators=params["gbdt_trees"], num_leaves=params["gbdt_leaves"],
                        learning_rate=params["gbdt_learning_rate"], threads=1)  # fmt: skip
    trained = time.perf_counter()
    result = run_gbdt_trial(setup.frames, setup.schema, SEED_TYPE, setup.frames[SEED_TYPE].select("driverId", "_kumo_id"),
                            setup.tables[QUERY], setup.task_types[QUERY], config, observe_until=TEST_TIMESTAMP)  # fmt: skip
    finished = time.perf_counter()
    print(json.dumps({"peak_rss_gib": peak_rss_gib(), "base_rss_gib": base, "ru_maxrss_gib": rusage_gib(),
                      "import_seconds": imported - started, "trial_seconds": finished - trained, "fit_seconds": result.fit_seconds,
                      "feature_seconds": result.feature_seconds, "features": result.features,
                      "steps": int(result.model.best_iterations[0]), **payload.get("extra", {})}))  # fmt: skip


def calibrate(configs: list[dict], scratch: Path, log: Path | None = None, warm: bool = False) -> list[dict]:
    """Measure every configuration and put the estimate beside it (appended to ``log`` as JSON lines)."""
    from cluster.trial_estimate import estimate_trial, work_terms

    prepared = prepare(scratch)
    stats = data_stats(prepared)
    rows = []
    for config in configs:
        params = {**BASE, **config}
        measured = measure(params, prepared, warm=warm)
        estimate = estimate_trial(params, stats)
        nodes, edges = sampled_sizes(params, prepared) if params["family"] == "gnn" else (0.0, 0.0)
        terms = work_terms(params, stats) if params["family"] == "gnn" else {}
        rows.append({"params": params, "measured": measured, "estimate": estimate.to_dict(),
                     "terms": terms, "sampled_nodes": nodes,
                     "sampled_edges": edges})  # fmt: skip
        print(_row(rows[-1]), flush=True)
        if log is not None:
            with log.open("a") as out:
                out.write(json.dumps(rows[-1], default=str) + "\n")
    return rows


def reestimate(rows: list[dict], scratch: Path) -> list[dict]:
    """Saved measurements beside the current code's estimates (after changing a coefficient)."""
    from cluster.trial_estimate import estimate_trial, work_terms

    stats = data_stats(prepare(scratch))
    for row in rows:
        row["estimate"] = estimate_trial(row["params"], stats).to_dict()
        row["terms"] = work_terms(row["params"], stats) if row["params"]["family"] == "gnn" else {}
    return rows


def _row(row: dict) -> str:
    p, m, e = row["params"], row["measured"], row["estimate"]
    if p["family"] == "gbdt":
        return (f"| gbdt: {p['gbdt_trees']} trees, {p['gbdt_leaves']} leaves, {m['features']} features | | | | | | "
                f"| {m['peak_rss_gib']:.2f} | {e['host_memory_gib']:.2f} | {e['host_memory_gib'] / m['peak_rss_gib']:.2f} "
                f"| {m['trial_seconds']:.1f} | {e['cpu_core_minutes'] * 60:.1f} |")  # fmt: skip
    return (f"| {p['conv']} | {p['channels']} | {p['layers']} | {p['batch_size']} | {p['fanouts']} "
            f"| {row['sampled_nodes']:,.0f} / {e['nodes_per_batch']:,.0f} "
            f"| {row['sampled_edges']:,.0f} / {e['edges_per_batch']:,.0f} "
            f"| {m['peak_rss_gib']:.2f} | {e['host_memory_gib']:.2f} | {e['host_memory_gib'] / m['peak_rss_gib']:.2f} "
            f"| {m['trial_seconds']:.1f} | {e['cpu_core_minutes'] * 60:.1f} |")  # fmt: skip


HEADER = (
    "| conv | channels | layers | batch | fanouts | nodes/batch measured / est. | edges/batch measured / est. "
    "| peak RSS GiB | est. GiB | est./meas. | trial s | est. s |\n|" + "---|" * 12
)


def fit_time(rows: list[dict]) -> dict[str, float]:
    """Non-negative least squares of trial seconds on the work terms (relative error, so each row weighs the
    same), with MODULE_SECONDS held at its assumed value and HGT rows left out (CONV_TIME scales them): the
    coefficients to copy into trial_estimate.py."""
    from scipy.optimize import nnls

    from cluster.trial_estimate import MODULE_SECONDS

    names = ["elements", "flop", "edge_work", "steps"]
    rows = [row for row in rows if row["params"].get("conv") in {"sage", "gin", "gatv2"}]
    seconds = np.array([row["measured"]["trial_seconds"] for row in rows])
    rest = seconds - MODULE_SECONDS * np.array([row["terms"]["modules"] for row in rows])
    terms = np.array([[row["terms"][name] for name in names] for row in rows]) / seconds[:, None]
    scale = terms.max(axis=0)
    coefficients, _ = nnls(terms / scale, rest / seconds)
    fitted = dict(zip(names, coefficients / scale, strict=True))
    return {"SAMPLE_SECONDS_PER_ELEMENT": fitted["elements"], "CPU_FLOPS": 1 / max(fitted["flop"], 1e-30),
            "EDGE_SECONDS": fitted["edge_work"], "STEP_SECONDS": fitted["steps"]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--warm-child", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="two configurations only")
    parser.add_argument("--warm", action="store_true", help="fork each trial from a warm trial server")
    parser.add_argument("--only", type=int, nargs="+", help="these configurations (indices into CONFIGS)")
    parser.add_argument("--scratch", default=os.environ.get("KUMO_BENCH_CACHE", ""),
                        help="where the F1 stores are built (default: a temporary folder)")  # fmt: skip
    parser.add_argument("--json", help="also append the rows here, one JSON line each")
    parser.add_argument(
        "--report", nargs="+", help="no new runs: re-estimate the rows saved in these --json files"
    )
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    if args.warm_child:
        warm_child(json.loads(args.warm_child))
        return
    import tempfile

    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="kumo-calibrate-"))
    scratch.mkdir(parents=True, exist_ok=True)
    print(HEADER)
    if args.report:
        rows = reestimate([json.loads(line) for path in args.report for line in Path(path).read_text().splitlines()],
                          scratch)  # fmt: skip
        print("\n".join(_row(row) for row in rows))
        print("fitted time coefficients:", json.dumps(fit_time(rows), indent=1))
        return
    configs = [CONFIGS[i] for i in args.only] if args.only else CONFIGS[1:3] if args.quick else CONFIGS
    rows = calibrate(configs, scratch, Path(args.json) if args.json else None, warm=args.warm)
    if len(rows) >= 4:
        print("fitted time coefficients:", json.dumps(fit_time(rows), indent=1))


if __name__ == "__main__":
    main()
