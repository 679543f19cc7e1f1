"""Both model families on RelBench rel-f1's three driver tasks, beside the published numbers.

Frozen regime (RelBench's reference GNN): no model sees a row after the test timestamp 2010-01-01, so test
anchors in 2010-2013 are predicted from the database as it stood on 2010-01-01. Every run selects on
validation only; test metrics are reported, never used. Prints mean +- std over seeds and CPU wall time.

    .venv/bin/python benchmarks/bench_f1.py                        # both families, 3 tasks, seeds 0 1 2
    .venv/bin/python benchmarks/bench_f1.py --families gnn --tasks driver_dnf --seeds 0 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from f1_setup import TEST_TIMESTAMP, driver_keys, f1_setup  # the benchmarks folder is on sys.path

from kumo_assets.trial import GNNTrialConfig, make_splits, run_gbdt_trial, run_gnn_trial
from models.gbdt import GBDTConfig
from models.gnn import GNNConfig
from models.trainer import TrainerConfig

# Published test numbers (RelBench paper; RelGNN paper), frozen regime.
PUBLISHED = {
    "driver_dnf": {"metric": "auroc", "RDL": 72.62, "RelGNN": 75.29, "LightGBM": 69.8},
    "driver_top3": {"metric": "auroc", "RDL": 75.54, "RelGNN": 85.69, "LightGBM": 82.4},
    "driver_position": {"metric": "mae", "RDL": 4.022, "RelGNN": 3.798, "LightGBM": 3.963},
}
TASKS = list(PUBLISHED)


def gnn_config(task: str, seed: int, epochs: int, overrides: dict | None = None) -> GNNTrialConfig:
    """The GNN recipe: RDL's shape (2 SAGE layers, sum, layer norm, [128, 64] neighbours, batch 512, lr
    0.005) with our encoders and relative-time encoding; L1 loss for the regression task. ``overrides``
    (``--set name=value``) replace fields of the model, trainer or sampling config by name."""
    overrides = dict(overrides or {})
    model = {"conv": "sage", "channels": 128, "layers": 2, "aggr": "sum", "norm": "layer", "dropout": 0.0}
    trainer = {"epochs": epochs, "lr": 0.005, "seed": seed, "patience": 0, "max_steps_per_epoch": 2000}
    trial = {"fanouts": (128, 64), "batch_size": 512}
    for name, value in overrides.items():
        target = next((group for group, cls in ((model, GNNConfig), (trainer, TrainerConfig),
                                                (trial, GNNTrialConfig)) if name in cls.__dataclass_fields__), None)  # fmt: skip
        if target is None:
            raise SystemExit(f"--set {name}: not a field of GNNConfig, TrainerConfig or GNNTrialConfig")
        target[name] = value
    return GNNTrialConfig(GNNConfig(**model), TrainerConfig(**trainer), **trial)


def parse_override(text: str) -> tuple[str, object]:
    name, _, raw = text.partition("=")
    value = json.loads(raw) if raw[:1] in "[{0123456789-" or raw in {"true", "false"} else raw
    return name, tuple(value) if isinstance(value, list) else value


def run(args) -> list[dict]:
    setup = f1_setup(args.tasks)
    keys = driver_keys(setup)
    rows = []
    for task in args.tasks:
        metric = PUBLISHED[task]["metric"]
        table = setup.tables[task]
        for family in args.families:
            for seed in args.seeds:
                started = time.perf_counter()
                if family == "gnn":
                    splits = make_splits(table, keys, "drivers", f"f1/{task}", observe_until=TEST_TIMESTAMP,
                                         simulate_staleness=args.staleness, seed=seed,
                                         freeze_validation=True)  # fmt: skip
                    result = run_gnn_trial(setup.graph, setup.features, splits, setup.task_types[task],
                                           gnn_config(task, seed, args.epochs, dict(args.set)))  # fmt: skip
                    metrics, detail = result.metrics, {"best_epoch": result.fit.best_epoch}
                else:
                    result = run_gbdt_trial(
                        setup.frames, setup.schema, "drivers", setup.frames["drivers"].select("driverId", "_kumo_id"),
                        table, setup.task_types[task], GBDTConfig(seed=seed), observe_until=TEST_TIMESTAMP,
                    )  # fmt: skip
                    metrics, detail = result.metrics, {"features": result.features}
                seconds = time.perf_counter() - started
                row = {"task": task, "family": family, "seed": seed, "metric": metric,
                       "val": metrics["val"][metric], "test": metrics["test"][metric], "seconds": seconds,
                       **detail}  # fmt: skip
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def report(rows: list[dict]) -> None:
    scale = {"auroc": 100.0, "mae": 1.0}
    print(f"\nrel-f1, frozen regime, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}")
    print(f"{'task':<16} {'family':<6} {'val':>15} {'test':>15} {'RDL':>7} {'RelGNN':>7} {'LightGBM':>8} "
          f"{'s/run':>7}")  # fmt: skip
    for task in TASKS:
        for family in ("gnn", "gbdt"):
            chosen = [row for row in rows if row["task"] == task and row["family"] == family]
            if not chosen:
                continue
            factor = scale[chosen[0]["metric"]]
            val = np.array([row["val"] for row in chosen]) * factor
            test = np.array([row["test"] for row in chosen]) * factor
            seconds = np.mean([row["seconds"] for row in chosen])
            published = PUBLISHED[task]
            print(f"{task:<16} {family:<6} {val.mean():>8.3f}+-{val.std():<5.3f} {test.mean():>8.3f}+-{test.std():<5.3f}"
                  f" {published['RDL']:>7} {published['RelGNN']:>7} {published['LightGBM']:>8} {seconds:>7.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    parser.add_argument("--families", nargs="+", default=["gnn", "gbdt"], choices=["gnn", "gbdt"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument(
        "--set",
        nargs="*",
        type=parse_override,
        default=[],
        metavar="NAME=VALUE",
        help="override a GNN/trainer/sampling field, e.g. conv=gatv2 fanouts=[64,32]",
    )
    parser.add_argument(
        "--no-staleness",
        dest="staleness",
        action="store_false",
        help="train and select without simulating the frozen regime's stale views",
    )
    parser.add_argument("--json", help="also write the per-run rows to this file")
    args = parser.parse_args()
    rows = run(args)
    report(rows)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(rows, file, indent=1)


if __name__ == "__main__":
    main()
