"""HPO throughput on F1: trials per hour at several parallelisms, and the shared minibatch cache's speed-up.

Runs the real ``hpo_study`` asset (Dagster, trials as Pipes subprocesses through the local launcher) on the
embedded F1 database's driver-dnf query. Every study is fresh (its own journal file); the batch cache is
emptied before each, so "shared" means trials of the same study reuse each other's batches.

    OMP_NUM_THREADS=1 python benchmarks/bench_hpo.py --trials 8 --parallelism 1 2 4

Baselines, measured in the same run: parallelism 1 (for the parallel ratios), the same study with
``share_batches: false`` (for the cache speed-up) and with ``KUMO_WARM_TRIALS=0`` (every trial a fresh
process instead of a fork of the warm trial server).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kumo_assets.asset_keys import stage_of

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dagster import AssetKey, instance_for_test, materialize  # noqa: E402

from kumo_assets.dagster_cli import materialize_command  # noqa: E402
from kumo_assets.definitions import DEFAULT_SPEC, build_definitions  # noqa: E402
from training.studies import StudyStorage  # noqa: E402

QUERY = "driver_dnf"
STUDY = AssetKey(["f1", QUERY, "study"])


def upstream(defs) -> list:
    wanted = {("f1", QUERY, "training_table")}
    return [a for a in defs.assets if any(stage_of(key) in {"raw", "graph_store", "feature_store"} or
                                          len(key.path) == 2 or tuple(key.path) in wanted for key in a.keys)]  # fmt: skip


def run_study(defs, instance, scratch: Path, label: str, config: dict, env: dict | None = None) -> dict:
    """One fresh study through the dagster CLI (multiprocess executor: slots in parallel processes);
    returns wall seconds, trials finished, trials/hour and the cache hit rate."""
    cache = scratch / "plane" / "f1" / "batch_cache"
    shutil.rmtree(cache, ignore_errors=True)
    journal = scratch / "journals" / f"{label}.log"
    journal.parent.mkdir(parents=True, exist_ok=True)
    op = "f1__" + QUERY + "__study"
    command, env = materialize_command(
        STUDY.to_user_string(),
        {"ops": {op: {"config": config}}},
        instance.root_directory,
        scratch / "plane",
        {"KUMO_OPTUNA_STORAGE": str(journal), **(env or {})},
    )
    started = time.perf_counter()
    completed = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    import optuna

    storage = StudyStorage(url=str(journal)).get_storage()
    (name,) = optuna.study.get_all_study_names(storage)
    trials = optuna.load_study(study_name=name, storage=storage).get_trials()
    done = [t for t in trials if t.state.name in {"COMPLETE", "PRUNED"}]
    hits = sum(t.user_attrs.get("cache", {}).get("hits", 0) for t in done)
    misses = sum(t.user_attrs.get("cache", {}).get("misses", 0) for t in done)
    trial_seconds = [t.user_attrs["seconds"] for t in done]
    return {"label": label, "seconds": round(seconds, 1), "trials": len(done),
            "trials_per_hour": round(3600 * len(done) / seconds, 1),
            "mean_trial_seconds": round(sum(trial_seconds) / max(len(trial_seconds), 1), 1),
            "cache_hit_rate": round(hits / (hits + misses), 3) if hits + misses else None,
            "warm_trials": sum(bool(t.user_attrs.get("forked_from")) for t in done),
            "best_value": max((t.value for t in done if t.value is not None), default=None)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--parallelism", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--cache-parallelism", type=int, default=2, help="parallelism of the cache on/off pair"
    )
    parser.add_argument(
        "--warm-parallelism", type=int, default=2, help="parallelism of the warm/cold trial-start pair"
    )
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=30, help="training steps per epoch of every trial")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    scratch = Path(os.environ.get("KUMO_BENCH_CACHE") or tempfile.mkdtemp(prefix="kumo-hpo-"))
    defs = build_definitions([DEFAULT_SPEC], str(scratch / "plane"))
    space = {
        "max_steps_per_epoch": args.max_steps,
        "epochs": [args.epochs, args.epochs],
        "sampling": ["medium2"],
    }
    base = {"mode": "fast", "n_trials": args.trials, "families": ["gnn"], "device": "cpu", "pruner": "none",
            "space": space}  # fmt: skip
    rows = []
    (scratch / "dagster").mkdir(parents=True, exist_ok=True)
    with instance_for_test(temp_dir=str(scratch / "dagster")) as instance:
        started = time.perf_counter()
        assert materialize(upstream(defs), resources=defs.resources, instance=instance).success
        print(f"F1 stores and training table: {time.perf_counter() - started:.0f} s", flush=True)
        for parallelism in args.parallelism:
            rows.append(run_study(defs, instance, scratch, f"parallelism-{parallelism}",
                                  {**base, "parallelism": parallelism, "seed": parallelism}))  # fmt: skip
            print(rows[-1], flush=True)
        for share in (False, True):
            rows.append(run_study(defs, instance, scratch, f"cache-{'on' if share else 'off'}",
                                  {**base, "parallelism": args.cache_parallelism, "share_batches": share,
                                   "seed": 100 + share}))  # fmt: skip
            print(rows[-1], flush=True)
        for warm in (False, True):
            rows.append(run_study(defs, instance, scratch, f"warm-{'on' if warm else 'off'}",
                                  {**base, "parallelism": args.warm_parallelism, "seed": 200 + warm},
                                  {"KUMO_WARM_TRIALS": "1" if warm else "0"}))  # fmt: skip
            print(rows[-1], flush=True)
    by_label = {row["label"]: row for row in rows}
    base_rate = by_label[f"parallelism-{args.parallelism[0]}"]["trials_per_hour"]
    print(
        f"\n{'run':<16}{'trials':>7}{'wall s':>9}{'trials/h':>10}{'ratio':>8}{'trial s':>9}{'cache hits':>11}"
    )
    for row in rows:
        family = row["label"].split("-")[0]
        reference = base_rate if family == "parallelism" else by_label[f"{family}-off"]["trials_per_hour"]
        print(f"{row['label']:<16}{row['trials']:>7}{row['seconds']:>9}{row['trials_per_hour']:>10}"
              f"{row['trials_per_hour'] / reference:>8.2f}{row['mean_trial_seconds']:>9}"
              f"{row['cache_hit_rate'] if row['cache_hit_rate'] is not None else '-':>11}")  # fmt: skip
    print(f"(cpu cores: {os.cpu_count()}; ratios against parallelism {args.parallelism[0]}, cache-off and "
          "warm-off (each trial a fresh process))")  # fmt: skip
    if args.json:
        args.json.write_text(
            json.dumps({"rows": rows, "args": vars(args) | {"json": str(args.json)}}, indent=2)
        )


if __name__ == "__main__":
    main()
