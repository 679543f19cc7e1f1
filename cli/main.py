"""The `kumo` command line: explain a predictive query, or build its training table, outside Dagster.

kumo query explain "PREDICT ..." --spec graph.yaml
kumo query table "PREDICT ..." --spec graph.yaml --val 2005-01-01 --test 2010-01-01 --out table.parquet
kumo predict --query driver_dnf --spec graph.yaml --entities rows.parquet --out predictions.parquet
kumo leaderboard --spec graph.yaml   # per query: chosen model, baselines, holdout; where predictions are
kumo validate --spec graph.yaml [--queries queries.yaml]   # every table and query checked; writes nothing
kumo automation   # which refresh schedules and sensors are on in $DAGSTER_HOME, and how to turn on the rest
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import polars as pl
from tqdm import tqdm

from cli.automation import add_automation_command, run_automation
from cli.predict import add_predict_command, run_predict
from cli.validate import add_validate_command, run_validate
from relational.errors import KumoError
from relational.graph_tables import ingest_in_memory, read_published_tables
from relational.pql.anchors import AnchorPlan
from relational.pql.binder import bind_query
from relational.pql.parser import parse_query
from relational.pql.queries import load_queries, queries_beside
from relational.pql.training_table import build_training_table
from relational.schema import GraphSchema
from relational.spec_loader import load_spec
from serving.errors import ServingError
from stores.atomic import atomic_path
from stores.data_plane import DataPlane
from stores.environment import data_plane_root, object_store_from_environment
from training.leaderboard import format_leaderboard, read_leaderboard

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kumo", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="group", required=True)
    query = commands.add_parser("query", help="predictive queries").add_subparsers(
        dest="command", required=True
    )
    for name, text in (("explain", "print the parsed query as JSON"), ("table", "build a training table")):
        sub = query.add_parser(name, help=text)
        sub.add_argument("pql", help="the predictive query, quoted")
        sub.add_argument("--spec", required=True, type=Path, help="graph.yaml")
        sub.add_argument(
            "--data-plane",
            default=os.environ.get("KUMO_DATA_PLANE"),
            help="read tables already ingested there (default: $KUMO_DATA_PLANE); else ingest in memory",
        )
    table = query.choices["table"]
    table.add_argument("--out", required=True, type=Path, help="Parquet file to write")
    table.add_argument("--val", help="RelBench style: validation timestamp")
    table.add_argument("--test", help="RelBench style: test timestamp")
    table.add_argument("--eval-anchors", type=int, default=1, help="val/test anchors one window apart")
    table.add_argument("--start", help="inferred anchors: earliest train anchor")
    table.add_argument(
        "--timestamps",
        action="append",
        default=[],
        metavar="SPLIT=T1,T2",
        help="explicit anchors for a split",
    )
    add_predict_command(commands)
    add_validate_command(commands)
    add_automation_command(commands)
    board = commands.add_parser("leaderboard", help="print each query's leaderboard stored by best_model")
    board.add_argument(
        "--spec", required=True, type=Path, help="graph.yaml (its queries.yaml names the queries)"
    )
    board.add_argument("--data-plane", default=None, help="default: $KUMO_DATA_PLANE, else .kumo/data")
    args = parser.parse_args(argv)
    try:
        if args.group == "predict":
            return run_predict(args)
        if args.group == "leaderboard":
            return _leaderboard(args)
        if args.group == "validate":
            return run_validate(args)
        if args.group == "automation":
            return run_automation(args)
        if args.command == "explain":
            return _explain(args)
        return _table(args)
    except (KumoError, ServingError) as exc:
        print(f"kumo: {exc}", file=sys.stderr)
        return 2


def _leaderboard(args) -> int:
    """Each query's leaderboard, then where its latest predictions and embeddings are."""
    spec = load_spec(args.spec)
    queries_file = queries_beside(spec.path)
    plane = DataPlane(root=args.data_plane or data_plane_root(), object_store=object_store_from_environment())
    missing = []
    for name in load_queries(queries_file) if queries_file else {}:
        try:
            rows = read_leaderboard(plane, spec.graph_name, name)
        except FileNotFoundError:
            missing.append(name)
            continue
        print(format_leaderboard(name, rows))
        for kind in ("predictions", "embeddings"):
            days = (
                []
                if plane.is_remote
                else sorted(Path(plane.uri(spec.graph_name, kind, name)).glob("*.parquet"))
            )
            if days:
                print(f"  {kind}: {days[-1]}")
        print()
    if missing:
        print(f"no leaderboard yet for {', '.join(missing)}: materialise {spec.graph_name}/<query>/best_model",
              file=sys.stderr)  # fmt: skip
    return 1 if missing else 0


def _graph(args) -> tuple[GraphSchema, dict[str, pl.DataFrame]]:
    spec = load_spec(args.spec)
    if args.data_plane:
        plane = DataPlane(root=args.data_plane)
        if Path(plane.uri(spec.graph_name, "tables")).is_dir() or plane.is_remote:
            frames, metas = read_published_tables(spec, plane)
            return GraphSchema.from_table_metadata(spec, metas), frames
    built = ingest_in_memory(spec)
    return GraphSchema.from_built_tables(spec, built), {name: table.frame for name, table in built.items()}


def _explain(args) -> int:
    parsed = parse_query(args.pql)
    schema, tables = _graph(
        args
    )  # the data too: two classes make a binary task, and constants are type-checked
    print(json.dumps(bind_query(parsed, schema, tables).explain(), indent=2, default=str))
    return 0


def _table(args) -> int:
    parse_query(args.pql)  # syntax errors before any data is read
    config: dict = {}
    if args.timestamps:
        config["timestamps"] = {}
        for item in args.timestamps:
            split, _, values = item.partition("=")
            config["timestamps"][split] = [value for value in values.split(",") if value]
    for key in ("val", "test", "start"):
        if getattr(args, key):
            config[key] = getattr(args, key)
    if args.val or args.test:
        config["eval_anchors"] = args.eval_anchors
    plan = AnchorPlan.from_config(config)
    with tqdm(total=None, desc="reading tables", unit="step", file=sys.stderr) as bar:
        schema, tables = _graph(args)

        def progress(message: str) -> None:
            bar.set_description(message)
            bar.update()

        result = build_training_table(args.pql, schema, tables, plan, progress)
    with atomic_path(args.out) as temporary:
        result.table.write_parquet(temporary)
    print(
        json.dumps(
            {"out": str(args.out), **{k: result.meta[k] for k in ("task_type", "rows", "anchors")}}, indent=2
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
