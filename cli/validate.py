"""`kumo validate`: check a graph spec, every table and every query before any asset runs; writes nothing.

kumo validate --spec graph.yaml [--queries queries.yaml]

Tables are read and built by the same plain functions as the Dagster ingest assets (`read_table_source`,
`build_table`, `build_implied_table`), and refused by the same blocking checks (primary key, event time);
then each query of the queries file is parsed and bound against the schema those tables give. One line per
table and per query; the first blocking problem stops the run with exit status 1 and a message naming the
place (file, table, column or query).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from relational.errors import KumoError
from relational.graph_tables import ingest_order, read_implied_keys
from relational.pql.queries import bind_named_query, load_queries, queries_beside
from relational.schema import GraphSchema
from relational.sources import read_table_source, untrusted_column_names
from relational.spec import DateAndTimeOfDay, GraphSpec
from relational.spec_loader import load_spec
from relational.table_build import BuiltTable, ParentKeys, build_implied_table, build_table
from stores.environment import object_store_from_environment

__all__ = ["add_validate_command", "run_validate"]

PROBLEM = 1  # exit status when the spec, a table or a query has a blocking problem


def add_validate_command(commands: argparse._SubParsersAction) -> None:
    """The ``validate`` sub-command and its options."""
    validate = commands.add_parser(
        "validate", help="check graph.yaml, every table and every query (writes nothing)"
    )
    validate.add_argument("--spec", required=True, type=Path, help="graph.yaml")
    validate.add_argument(
        "--queries", type=Path, default=None, help="queries.yaml (default: the one beside the spec, if any)"
    )


def run_validate(args: argparse.Namespace) -> int:
    """Print one line per table and query; return 0 when all is well, `PROBLEM` at the first blocking one."""
    try:
        spec = load_spec(args.spec)
    except KumoError as exc:
        return _problem(f"graph spec {args.spec}: problem", exc)
    print(f"graph {spec.graph_name} ({spec.path}): {len(spec.tables)} table(s)")
    metas: dict[str, dict] = {}
    keys: dict[str, ParentKeys] = {}
    options = object_store_from_environment().storage_options()  # s3:// sources, as the assets read them
    referenced = {parent for table in spec.tables for parent in spec.parents(table)}
    for table in ingest_order(spec):
        try:
            built = _build(spec, table, keys, options)
            built.raise_for_blocking()
        except KumoError as exc:
            return _problem(f"table {table}: problem", exc)
        metas[table] = built.meta
        if table in referenced:
            keys[table] = built.parent_keys(spec.table(table).primary_key_columns)
        print(_table_line(spec, table, built))
        for check in built.checks:
            if not check.passed:
                print(f"    warning ({check.name}): {check.description}")
    queries_file = args.queries or queries_beside(spec.path)
    if queries_file is None:
        print(
            f"OK: {len(spec.tables)} table(s) pass; no queries.yaml beside the spec, so no query was checked"
        )
        return 0
    try:
        queries = load_queries(queries_file)
    except KumoError as exc:
        return _problem(f"queries {queries_file}: problem", exc)
    schema = GraphSchema.from_table_metadata(spec, metas)
    hidden = untrusted_column_names(spec, metas)
    for name, query in queries.items():
        try:
            bound = bind_named_query(query, schema, hidden)
        except KumoError as exc:
            return _problem(f"query {name}: problem", exc)
        print(f"  query {name:<28} {bound.task_type:<26} OK")
    print(f"OK: {len(spec.tables)} table(s) and {len(queries)} query(ies) of {queries_file} pass")
    return 0


def _build(spec: GraphSpec, table: str, keys: dict[str, ParentKeys], options: dict[str, str]) -> BuiltTable:
    """One table as its ingest asset builds it, with parents' keys from this run instead of the data plane."""
    if spec.table(table).implied:
        return build_implied_table(spec, table, read_implied_keys(spec, table, options))
    parents = {parent: keys[parent] for parent in spec.parents(table)}
    return build_table(spec, table, read_table_source(spec, table, options), parents)


def _table_line(spec: GraphSpec, table: str, built: BuiltTable) -> str:
    table_spec = spec.table(table)
    if table_spec.implied:
        time = "implied by its foreign keys"
    elif isinstance(table_spec.time_column, DateAndTimeOfDay):
        clock = table_spec.time_column.time_of_day
        time = f"time {table_spec.time_column.date}" + (f" + {clock}" if clock else "")
    elif table_spec.time_column is not None:
        time = f"time {table_spec.time_column}"
    elif table_spec.time_from is not None:
        time = f"time from {spec.foreign_key(table, table_spec.time_from.foreign_key).table}"
    else:
        time = "no time"
    warnings = sum(not check.passed for check in built.checks)
    verdict = f"OK ({warnings} warning(s))" if warnings else "OK"
    rows, columns = built.meta["rows"], len(built.meta["stypes"])
    return f"  table {table:<28} {rows:>10,} rows {columns:>4} columns  {time:<34} {verdict}"


def _problem(line: str, exc: KumoError) -> int:
    print(f"  {line}")
    print(f"kumo validate: {exc}", file=sys.stderr)
    return PROBLEM
