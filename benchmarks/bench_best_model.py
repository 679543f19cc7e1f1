"""The product's own path on one query: refit the latest study's best trial of each family (train + val, as
the ``best_model`` asset does) with several seeds, and print each refit's and their blend's test metric.

It prints holdout numbers only, so it needs ``--report-test`` (read them once, after every choice). Run after
materialising ``<graph>/<query>/study`` with trials of both families, in the same environment
(``KUMO_DATA_PLANE``, ``KUMO_GRAPH_SPEC``). docs/benchmarks.md, "The product's own path under RelBench's
protocol", used seeds 0 1 2 on the three F1 driver tasks.

    .venv/bin/python benchmarks/bench_best_model.py driver_dnf --seeds 0 1 2 --report-test
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from kumo_assets.definitions import defs, plain_resources, spec_paths_from_environment
from models.blending import blend_outputs, check_same_rows, scored_rows_from_bytes
from models.metrics import compute_metrics
from models.uncertainty import ScoredRows, grouped_bootstrap
from relational.pql.queries import load_queries, queries_beside
from relational.spec_loader import load_spec
from training.refit import refit_config
from training.run import SCORED_ROWS, train_query_model
from training.study_summary import read_study_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("query")
    parser.add_argument("--graph", default="f1")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--report-test", action="store_true", help="required: this benchmark reports holdout numbers"
    )
    args = parser.parse_args()
    if not args.report_test:
        raise SystemExit(
            "bench_best_model scores refits on the test rows: pass --report-test to say you mean it "
            "(read the numbers once, after every choice is made on validation)"
        )
    resources = plain_resources(defs)
    plane, graphs, features = resources["data_plane"], resources["graph_store"], resources["feature_store"]
    specs = [load_spec(path) for path in spec_paths_from_environment()]  # as the Definitions load them
    spec = next(spec for spec in specs if spec.graph_name == args.graph)
    query = load_queries(queries_beside(spec.path))[args.query]
    summary = read_study_summary(plane, args.graph, args.query)
    blend = summary.get("family_blend")
    if not blend:
        raise SystemExit(
            f"the latest study of {args.graph}/{args.query} has no complete trials of two families"
        )
    task, metric = summary["task_type"], summary["metric"]
    print(
        json.dumps(
            {"study": summary["study_name"], "validation": {k: blend[k] for k in ("members", "blend")}}
        )
    )
    rows = []
    for seed in args.seeds:
        tests = {}
        for family, refit in blend["refits"].items():
            config = refit_config({**refit, "params": {**refit["params"], "seed": seed}})
            trained = train_query_model(spec, query, config, plane, graphs, features, log=lambda *_: None)
            stored = plane.get_bytes(args.graph, "models", args.query, trained.run_key, SCORED_ROWS)
            tests[family] = scored_rows_from_bytes(stored)["test"]
        check_same_rows(tests)
        first = next(iter(tests.values()))
        blended = ScoredRows(
            first.labels, blend_outputs(task, [t.outputs for t in tests.values()]), first.groups
        )
        row = {family: compute_metrics(task, t.labels, t.outputs)[metric] for family, t in tests.items()}
        row["blend"] = compute_metrics(task, blended.labels, blended.outputs)[metric]
        interval = grouped_bootstrap(task, metric, blended, seed=seed)
        print(json.dumps({"seed": seed, **row, "blend_interval": [interval.low, interval.high]}), flush=True)
        rows.append(row)
    for name in rows[0]:
        values = np.array([row[name] for row in rows])
        print(
            f"{args.query} {name}: test {metric} {values.mean():.4f} +- {values.std():.4f} over {len(rows)} seeds"
        )


if __name__ == "__main__":
    main()
