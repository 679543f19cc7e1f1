"""Quality where it can be measured: the product's own path against a hand-written feature-engineering +
LightGBM baseline and trivial baselines, on the same rows of real databases with over 1,000 test entities.

For each task (an example query under ``kumo_assets/examples/<graph>/queries.yaml``), in one process:

(a) the product's path: tables, stores and the training table, then the ``study`` asset through the dagster
    CLI (both families, ``n_study_seeds`` seeds, validation-only choice); with ``--report-test``, each study
    seed's choice refit on train + val as ``best_model`` does (the blend when validation preferred it);
(b) ``benchmarks/handwritten_baseline.py``: history aggregates over several windows, recency, counts and
    static attributes, LightGBM with its rounds chosen on validation and refit on train + val;
(c) trivial baselines (``training.baselines``): a constant, the entity's own mean and its own last label.

Validation metrics are printed always; test metrics (each with its 95% interval over resampled entities, and
the paired difference product minus hand-written baseline with its interval) only with ``--report-test``,
read once after every choice was made. Results go to ``--json``.

    .venv/bin/python benchmarks/bench_quality.py --tasks completejourney/churn --study-seeds 3 --report-test
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kumo_assets.dagster_cli import materialize_command  # noqa: E402
from models.metrics import tune_metric  # noqa: E402
from models.uncertainty import ScoredRows, grouped_bootstrap, paired_difference  # noqa: E402
from training.baselines import baseline_outputs  # noqa: E402

EXAMPLES = ROOT / "kumo_assets" / "examples"
TASKS = ("completejourney/churn", "completejourney/spend", "nycflights13/late_departure")
RESAMPLES = 1000
_INGESTED: set[str] = set()  # databases whose tables and stores this process has materialised


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), help="<graph>/<query> of the examples")
    parser.add_argument("--study-seeds", type=int, default=3, help="n_study_seeds of each study (at least 3)")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="study seeds first-seed .. first-seed + n - 1"
    )
    parser.add_argument("--mode", default="fast", help="the study's mode (search space and default budgets)")
    parser.add_argument("--trials", type=int, default=8, help="trials per study seed")
    parser.add_argument(
        "--observe-until", help="freeze the database at this ISO date (RelBench's F1 protocol)"
    )
    parser.add_argument(
        "--protocols",
        nargs="+",
        default=["refit"],
        choices=["refit", "train_rows"],
        help="final models: refit on train + val, and/or retrained on the training rows only",
    )
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument("--space", default="{}", help="JSON overrides of the fast search space")
    parser.add_argument(
        "--scratch", help="keep tables, stores and studies here (default: a temporary folder)"
    )
    parser.add_argument(
        "--reuse-stores",
        action="store_true",
        help="the scratch folder already holds these databases' tables and stores: build only the "
        "training tables and continue the studies (their completed trials are kept)",
    )
    parser.add_argument("--report-test", action="store_true", help="refit and score the holdout (read once)")
    parser.add_argument("--json", help="write every number here")
    parser.add_argument("--markdown", nargs="+", metavar="JSON", help="print earlier runs' --json as tables")
    args = parser.parse_args()
    if args.markdown:
        for path in args.markdown:
            print(markdown(json.loads(Path(path).read_text())))
        return
    shared = Path(os.environ.get("KUMO_SHARED_DATA", ROOT.parent / "shared" / "data"))
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="bench_quality-"))
    results = []
    if args.reuse_stores:
        _INGESTED.update(task.split("/")[0] for task in args.tasks)
    for task in args.tasks:
        graph, query = task.split("/")
        result = run_task(graph, query, scratch / graph, shared, args)
        results.append(result)
        print_task(result)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1, default=float))


def run_task(graph: str, query: str, scratch: Path, shared: Path, args) -> dict[str, Any]:
    """One task's three contenders on the same training-table rows."""
    if not (shared / graph).is_dir():
        raise SystemExit(f"{shared / graph} is missing: bench_quality reads the real {graph} database there")
    env = {"KUMO_GRAPH_SPEC": str(EXAMPLES / graph / "graph.yaml"), "KUMO_SHARED_DATA": str(shared)}
    plane, home = scratch / "plane", scratch / "dagster"
    plane.mkdir(parents=True, exist_ok=True)
    home.mkdir(parents=True, exist_ok=True)
    os.environ.update({**env, "KUMO_DATA_PLANE": str(plane), "DAGSTER_HOME": str(home)})
    from kumo_assets.definitions import build_definitions, plain_resources

    started = time.perf_counter()
    config = {"mode": args.mode, "n_trials": args.trials, "n_study_seeds": args.study_seeds, "seed": args.first_seed,
              "parallelism": args.parallelism, "device": "cpu", "families": ["gnn", "gbdt"],
              "observe_until": args.observe_until, "space": json.loads(args.space)}  # fmt: skip
    run_config = {"ops": {f"{graph}__{query}__study": {"config": config}}}
    # the first task of a database builds its tables and stores; later ones only their training table and study
    selection = (f'key:"{graph}/{query}/training_table" or key:"{graph}/{query}/study"' if graph in _INGESTED
                 else f'+key:"{graph}/{query}/study"')  # fmt: skip
    command, environment = materialize_command(selection, run_config, home, plane, env)
    finished = subprocess.run(command, env=environment, capture_output=True, text=True)
    if finished.returncode != 0:
        raise SystemExit(f"the product's study of {graph}/{query} failed:\n{finished.stderr[-4000:]}")
    search_seconds = time.perf_counter() - started
    _INGESTED.add(graph)

    defs = build_definitions([EXAMPLES / graph / "graph.yaml"], str(plane))
    resources = plain_resources(defs)
    data_plane = resources["data_plane"]
    table = data_plane.get_frame(graph, "training_tables", f"{query}.parquet")
    meta = data_plane.get_json(graph, "training_tables", f"{query}.json")
    task_type = meta["task_type"]
    metric = tune_metric(task_type)
    from training.study_summary import read_study_summary

    seeds = (
        list(range(args.first_seed, args.first_seed + args.study_seeds)) if args.study_seeds > 1 else [None]
    )  # one seed: no per-seed summaries
    summaries = {seed: read_study_summary(data_plane, graph, query, seed) for seed in seeds}
    result: dict[str, Any] = {
        "task": f"{graph}/{query}", "task_type": task_type, "metric": metric,
        "rows": {split: int((table["split"] == split).sum()) for split in ("train", "val", "test")},
        "test_entities": int(table.filter(pl.col("split") == "test")["entity"].n_unique()),
        "product": {"search_seconds": search_seconds, "trials_per_seed": args.trials,
                    "seeds": [seed_row(seed, summary) for seed, summary in summaries.items()]},
    }  # fmt: skip

    val = table.filter(pl.col("split") == "val")
    val_groups = val["entity"].to_numpy()
    val_labels = _labels(val, task_type)
    fitted = handwritten_baseline(graph, data_plane, table, task_type)
    if fitted is not None:
        outputs = fitted.pop("val_outputs")
        fitted["val"] = _interval(task_type, metric, ScoredRows(val_labels, outputs, val_groups))
        result["handwritten"] = {name: value for name, value in fitted.items() if name != "test_outputs"}
    result["trivial_val"] = {
        name: _interval(task_type, metric, ScoredRows(val_labels, outputs, val_groups))
        for name, (_, outputs) in baseline_outputs(table, task_type, "val").items()
    }
    if args.report_test:
        result["test"] = {
            protocol: holdout(graph, query, resources, table, task_type, metric, fitted, summaries, protocol)
            for protocol in args.protocols
        }
    from training.leaderboard import published_numbers

    result["published"] = published_numbers(EXAMPLES / graph / "graph.yaml", query)
    return result


def handwritten_baseline(
    graph: str, data_plane, table: pl.DataFrame, task_type: str
) -> dict[str, Any] | None:
    """(b): hand-written features and LightGBM (rounds chosen on validation, refit on train + val); None for a
    database without a hand-written feature plan."""
    from benchmarks import handwritten_baseline as handwritten
    from benchmarks.handwritten_plans import PLANS, plan_tables

    plan = PLANS.get(graph)
    if plan is None:
        return None
    started = time.perf_counter()
    tables = plan_tables(data_plane, graph, plan)
    features = handwritten.build_features(tables, table, plan)
    fitted = handwritten.fit_and_score(features, table, task_type, seed=0)
    return {"seconds": time.perf_counter() - started, "features": features.width, "rounds": fitted["rounds"],
            "val_outputs": handwritten.split_arrays(table, fitted, "val")[1],
            "test_outputs": handwritten.split_arrays(table, fitted, "test")[1]}  # fmt: skip


def seed_row(seed: int | None, summary: dict[str, Any]) -> dict[str, Any]:
    """One study seed's choice on validation: the best trial and whether its blend with the other family won."""
    best = summary["best"] or {}
    blend = summary.get("family_blend") or {}
    return {"seed": seed, "study": summary["study_name"], "family": (best.get("params") or {}).get("family"),
            "trial": best.get("number"), "val": best.get("value"), "blend_val": blend.get("blend"),
            "serves_blend": bool(blend.get("blend_is_better"))}  # fmt: skip


def holdout(graph, query, resources, table, task_type, metric, fitted, summaries, protocol) -> dict[str, Any]:
    """Each study seed's served model, final-fit by ``protocol`` and scored on test, beside the baselines on the
    same rows."""
    from relational.pql.queries import load_queries, queries_beside
    from relational.spec_loader import load_spec
    from training.refit import refit_blend, refit_winner, served_test_rows

    spec = load_spec(EXAMPLES / graph / "graph.yaml")
    named = load_queries(queries_beside(spec.path))[query]
    stores = (resources["data_plane"], resources["graph_store"], resources["feature_store"])
    test = table.filter(pl.col("split") == "test")
    labels = _labels(test, task_type)
    seeds = []
    for seed in summaries:
        started = time.perf_counter()
        winner, _, summary = refit_winner(spec, named, *stores, lambda _: None, seed, protocol)
        blend = refit_blend(spec, named, summary, winner, *stores, lambda _: None, protocol)
        run_keys = [winner.run_key] + ([] if blend is None else [member["run_key"] for family, member in
                                                                 blend["members"].items() if family != winner.family])  # fmt: skip
        served = served_test_rows(spec, named, resources["data_plane"], task_type, run_keys)
        groups = _aligned_groups(served, test)
        rows = ScoredRows(labels, served.outputs, groups)
        seeds.append({"seed": seed, "served": "blend" if blend else winner.family,
                      "seconds": time.perf_counter() - started, "test": _interval(task_type, metric, rows)})  # fmt: skip
        if fitted is not None:
            against = ScoredRows(labels, fitted["test_outputs"], groups)
            seeds[-1]["minus_handwritten"] = paired_difference(task_type, metric, rows, against,
                                                               resamples=RESAMPLES).to_dict()  # fmt: skip
    groups = test["entity"].to_numpy()
    return {
        "product": seeds,
        "handwritten": None if fitted is None else _interval(task_type, metric,
                                                             ScoredRows(labels, fitted["test_outputs"], groups)),
        "trivial": {name: _interval(task_type, metric, ScoredRows(labels, outputs, groups))
                    for name, (_, outputs) in baseline_outputs(table, task_type, "test").items()},
    }  # fmt: skip


def _aligned_groups(served: ScoredRows, test: pl.DataFrame) -> np.ndarray:
    """The served test rows must be the training table's test rows in order (same labels, and each entity
    always under one graph node and each node one entity); the entity keys then group both alike."""
    labels = test["label"].to_numpy().astype(np.float64)
    entities = test["entity"].to_numpy()
    pairs = set(zip(entities.tolist(), np.asarray(served.groups).tolist(), strict=True))
    same_labels = len(served.labels) == len(labels) and np.allclose(np.asarray(served.labels, float), labels)
    one_to_one = len(pairs) == len(set(entities.tolist())) == len({node for _, node in pairs})
    if not (same_labels and one_to_one):
        raise RuntimeError("the served test rows are not the training table's test rows in order")
    return entities


def _labels(rows: pl.DataFrame, task_type: str) -> np.ndarray:
    labels = rows["label"].to_numpy()
    return labels.astype(int) if task_type == "binary_classification" else labels.astype(np.float64)


def _interval(task_type: str, metric: str, rows: ScoredRows) -> dict[str, Any]:
    return grouped_bootstrap(task_type, metric, rows, resamples=RESAMPLES).to_dict()


def print_task(result: dict[str, Any]) -> None:
    metric = result["metric"]
    print(f"\n{result['task']} ({result['task_type']}, {metric}); rows {result['rows']}, "
          f"{result['test_entities']} test entities")  # fmt: skip
    product = result["product"]
    print(f"  product search: {len(product['seeds'])} study seeds x {product['trials_per_seed']} trials in "
          f"{product['search_seconds']:.0f} s")  # fmt: skip
    for row in product["seeds"]:
        blend = (
            f", blend {row['blend_val']:.4f}{' (served)' if row['serves_blend'] else ''}"
            if row["blend_val"]
            else ""
        )
        print(
            f"    seed {row['seed']} ({row['study']}): {row['family']} trial {row['trial']}, val {row['val']:.4f}{blend}"
        )
    hand = result.get("handwritten")
    if hand:
        print(f"  hand-written FE + LightGBM: {hand['features']} features, {hand['rounds']} rounds, "
              f"{hand['seconds']:.0f} s; val {_fmt(hand['val'])}")  # fmt: skip
    for name, interval in result["trivial_val"].items():
        print(f"  trivial {name}: val {_fmt(interval)}")
    for protocol, test in (result.get("test") or {}).items():
        print(f"  holdout (test), final models by the {protocol} protocol, scored once:")
        for row in test["product"]:
            paired = (
                f"; minus hand-written {_fmt(row['minus_handwritten'])}" if "minus_handwritten" in row else ""
            )
            print(
                f"    product seed {row['seed']} ({row['served']}, {row['seconds']:.0f} s): {_fmt(row['test'])}{paired}"
            )
        if test["handwritten"]:
            print(f"    hand-written: {_fmt(test['handwritten'])}")
        for name, interval in test["trivial"].items():
            print(f"    trivial {name}: {_fmt(interval)}")
    for item in result.get("published") or []:
        print(f"  published {item['model']}: {item['value']} ({item['protocol']})")


def markdown(results: list[dict[str, Any]]) -> str:
    """One row per task and final-model protocol: the product per study seed and over seeds, the hand-written
    baseline, the paired differences and the best trivial baseline, all on the same test rows."""
    lines = ["| task (metric, test entities) | protocol | product per study seed (served) | product mean +- std | "
             "hand-written FE + LightGBM | product minus hand-written, per seed | best trivial baseline |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for result in results:
        for protocol, test in (result.get("test") or {}).items():
            values = [row["test"]["estimate"] for row in test["product"]]
            per_seed = "; ".join(f"{_fmt(row['test'])} ({row['served']})" for row in test["product"])
            paired = "; ".join(
                _fmt(row["minus_handwritten"]) for row in test["product"] if "minus_handwritten" in row
            )
            better = max if result["metric"] != "mae" else min
            trivial_name = better(test["trivial"], key=lambda name: test["trivial"][name]["estimate"])
            hand = _fmt(test["handwritten"]) if test["handwritten"] else "-"
            lines.append(f"| {result['task']} ({result['metric']}, {result['test_entities']}) | {protocol} | {per_seed} | "
                         f"{np.mean(values):.4f} +- {np.std(values, ddof=1) if len(values) > 1 else 0:.4f} | {hand} | "
                         f"{paired or '-'} | {trivial_name}: {_fmt(test['trivial'][trivial_name])} |")  # fmt: skip
    return "\n".join(lines)


def _fmt(interval: dict[str, Any]) -> str:
    return f"{interval['estimate']:.4f} [{interval['low']:.4f}, {interval['high']:.4f}]"


if __name__ == "__main__":
    main()
