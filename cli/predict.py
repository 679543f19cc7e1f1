"""`kumo predict`: score a table of (entity, anchor_time) rows with a query's stored best model.

kumo predict --query driver_dnf --spec graph.yaml --entities rows.parquet --out predictions.parquet

The model, tables and stores are found where the assets put them (``KUMO_DATA_PLANE``, ``KUMO_GRAPH_STORE``,
the same defaults as the Dagster definitions), and rows go through the same code as the `predictions` asset
(`serving.predict`). Anchors after the newest data are scored on the data as it stands (``data_age_days``
says how old it was); unknown entities and anchors before the data begins are errors that name the rows,
or, with ``--skip-invalid``, are left out and listed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl

from relational.pql.binder import bind_query
from relational.pql.parser import parse_query
from relational.pql.queries import load_queries, queries_beside
from relational.spec_loader import load_spec
from serving.errors import ServingError
from stores.atomic import atomic_path
from stores.data_plane import DataPlane
from stores.environment import data_plane_root, graph_store_root, object_store_from_environment

__all__ = ["add_predict_command", "run_predict"]


def add_predict_command(commands) -> None:
    """The ``predict`` sub-command and its options."""
    predict = commands.add_parser(
        "predict", help="score (entity, anchor_time) rows with a query's best model"
    )
    predict.add_argument("--query", required=True, help="the query's name in queries.yaml beside the spec")
    predict.add_argument("--spec", required=True, type=Path, help="graph.yaml")
    predict.add_argument("--entities", required=True, help="Parquet or CSV with columns entity, anchor_time")
    predict.add_argument("--out", required=True, help="Parquet file to write (a path or s3:// URI)")
    predict.add_argument("--skip-invalid", action="store_true",
                         help="leave out (and list) rows with unknown entities or anchors before the data")  # fmt: skip
    predict.add_argument("--data-plane", default=None, help="default: $KUMO_DATA_PLANE, else .kumo/data")
    predict.add_argument("--threads", type=int, default=None, help="CPU threads for sampling and torch")


def run_predict(args: argparse.Namespace) -> int:
    """Score the rows, write the output atomically, print a JSON summary (skipped rows on stderr)."""
    # the models (torch) load here, not when `kumo` starts: `kumo validate` and `kumo query` stay quick
    from serving.daily import open_scoring_data
    from serving.predict import resolve_rows, write_predictions
    from serving.served_model import load_served_model
    from stores.feature_store import FeatureStores
    from stores.graph_store import GraphStores

    spec = load_spec(args.spec)
    queries_file = queries_beside(spec.path)
    queries = load_queries(queries_file) if queries_file else {}
    if args.query not in queries:
        raise ServingError(f"no query {args.query!r} in {queries_file or 'a queries.yaml beside ' + str(args.spec)}; "
                           f"known: {sorted(queries)}")  # fmt: skip
    query = queries[args.query]
    root = args.data_plane or data_plane_root()
    plane = DataPlane(root=root, object_store=object_store_from_environment())
    stores = graph_store_root(root)
    served = load_served_model(plane, spec.graph_name, query.name)
    data = open_scoring_data(spec, plane, GraphStores(root=stores), FeatureStores(root=stores))
    entity_table = bind_query(parse_query(query.text), data.schema).entity_table
    rows, skipped = resolve_rows(
        _read_rows(args.entities), data, entity_table, args.skip_invalid, args.entities
    )
    run = write_predictions(served, data, rows, lambda path: _publish(path, args.out, plane), entity_table,
                            threads=args.threads)  # fmt: skip
    ages = data.data_age_days(rows["anchor_time"].to_numpy()) if rows.height else np.zeros(0)
    summary = {"out": run.uri, "rows": run.rows, "skipped": skipped.height, "model_version": run.model_version,
               "data_version": run.data_version, "seconds": round(run.seconds, 3),
               "oldest_data_age_days": None if not len(ages) else float(np.nanmax(ages))}  # fmt: skip
    print(json.dumps(summary, indent=2))
    if skipped.height:
        print(f"kumo: left out {skipped.height} row(s):", file=sys.stderr)
        for row, entity, anchor, reason in skipped.head(50).rows():
            print(f"  row {row} entity {entity!r} anchor {anchor}: {reason}", file=sys.stderr)
    return 0


def _read_rows(path: str) -> pl.DataFrame:
    try:
        if path.endswith(".csv"):
            return pl.read_csv(path, try_parse_dates=True)
        return pl.read_parquet(path)
    except (OSError, pl.exceptions.ComputeError) as error:
        raise ServingError(f"{path}: cannot read the entities table ({str(error).splitlines()[0]}); give a "
                           "Parquet or CSV file with columns entity, anchor_time") from None  # fmt: skip


def _publish(path: Path, out: str, plane: DataPlane) -> str:
    """Move the finished file to ``out`` in one step: a rename locally, one upload to S3."""
    if out.startswith("s3://"):
        parent, _, name = out.rpartition("/")
        return DataPlane(root=parent, object_store=plane.object_store).put_file(path, name)
    with atomic_path(out) as temporary:
        shutil.copyfile(path, temporary)
    return str(Path(out).resolve())
