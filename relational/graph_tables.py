"""A whole graph's validated tables, either built in memory from the sources or read from the data plane."""

from __future__ import annotations

import graphlib
from collections.abc import Mapping

import polars as pl

from relational.errors import IngestError
from relational.sources import read_table_source
from relational.spec import GraphSpec
from relational.table_build import BuiltTable, build_implied_table, build_table, normalise_key_frame

__all__ = ["ingest_in_memory", "ingest_order", "read_implied_keys"]


def ingest_order(spec: GraphSpec) -> list[str]:
    """Tables in an order where every table comes after the tables its foreign keys point at."""
    return list(
        graphlib.TopologicalSorter({table: spec.parents(table) for table in spec.tables}).static_order()
    )


def read_implied_keys(
    spec: GraphSpec, table: str, storage_options: Mapping[str, str] | None = None
) -> list[pl.DataFrame]:
    """The key columns of every foreign key that points at an implied table, renamed to its key names."""
    key_columns = spec.table(table).primary_key_columns
    frames = []
    for child, fk in spec.referencing(table):
        child_spec = spec.table(child)
        raw = read_table_source(spec, child, storage_options, columns=list(fk.columns))
        keys = normalise_key_frame(raw, child_spec.null_values, child_spec.timezone)
        frames.append(keys.rename(dict(zip(fk.columns, key_columns, strict=True))))
    return frames


def ingest_in_memory(
    spec: GraphSpec, storage_options: Mapping[str, str] | None = None, strict: bool = True
) -> dict[str, BuiltTable]:
    """Validate every table of ``spec`` without writing anything (for the CLI, tests and notebooks).

    Args:
        strict: raise `IngestError` for the first table whose blocking checks fail (else keep going).
    """
    built: dict[str, BuiltTable] = {}
    for table in ingest_order(spec):
        if spec.table(table).implied:
            built[table] = build_implied_table(spec, table, read_implied_keys(spec, table, storage_options))
        else:
            parents = {
                parent: built[parent].parent_keys(spec.table(parent).primary_key_columns)
                for parent in spec.parents(table)
            }
            raw = read_table_source(spec, table, storage_options)
            built[table] = build_table(spec, table, raw, parents)
        if strict:
            built[table].raise_for_blocking()
    return built


def read_published_tables(spec: GraphSpec, data_plane) -> tuple[dict[str, pl.DataFrame], dict[str, dict]]:
    """Every validated table of ``spec`` and its metadata, as ingest published them to the data plane."""
    frames, metas = {}, {}
    for table in spec.tables:
        try:
            metas[table] = data_plane.get_json(spec.graph_name, "tables", f"{table}.json")
            frames[table] = data_plane.get_frame(spec.graph_name, "tables", f"{table}.parquet")
        except FileNotFoundError as exc:
            raise IngestError(
                f"table {table!r} is not ingested yet ({exc}); materialise {spec.graph_name}/{table}"
            ) from None
    return frames, metas
