"""A graph's validated tables and its training tables, published on the data plane (Parquet + JSON metadata)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from relational.errors import IngestError
from relational.graph_tables import read_implied_keys, read_published_tables
from relational.keys import NODE_ID
from relational.pql.queries import NamedQuery, query_errors_in_place
from relational.pql.training_table import TrainingTable, build_training_table
from relational.schema import GraphSchema
from relational.sources import read_table_source, untrusted_column_names
from relational.spec import GraphSpec
from relational.table_build import (
    EVENT_TIME,
    BuiltTable,
    ParentKeys,
    build_implied_table,
    build_table,
)
from stores.data_plane import DataPlane

__all__ = ["ingest_table", "load_parent_keys", "materialise_training_table", "publish_table"]


def _table_parts(spec: GraphSpec, table: str, suffix: str) -> tuple[str, str, str]:
    return spec.graph_name, "tables", f"{table}.{suffix}"


def load_parent_keys(spec: GraphSpec, parent: str, data_plane: DataPlane) -> ParentKeys:
    """Key columns, node ids and times of an already-published parent table."""
    try:
        meta = data_plane.get_json(*_table_parts(spec, parent, "json"))
        key_columns = meta["primary_key"]
        columns = [*key_columns, NODE_ID, *([EVENT_TIME] if meta.get("time") else [])]
        frame = data_plane.get_frame(*_table_parts(spec, parent, "parquet"), columns=columns)
    except FileNotFoundError as exc:
        raise IngestError(
            f"parent table {parent!r} is not ingested yet ({exc}); materialise {spec.graph_name}/{parent} first"
        ) from None
    return ParentKeys(parent, key_columns, frame, meta.get("content_hash"))


def ingest_table(
    spec: GraphSpec, table: str, data_plane: DataPlane, storage_options: Mapping[str, str] | None = None
) -> BuiltTable:
    """Read a table's source and its parents' keys, then validate and normalise it (writes nothing)."""
    if spec.table(table).implied:
        return build_implied_table(spec, table, read_implied_keys(spec, table, storage_options))
    raw = read_table_source(spec, table, storage_options)
    parents = {parent: load_parent_keys(spec, parent, data_plane) for parent in spec.parents(table)}
    return build_table(spec, table, raw, parents)


def publish_table(spec: GraphSpec, built: BuiltTable, data_plane: DataPlane) -> dict:
    """Write a validated table and its metadata atomically; refuse if a blocking check failed."""
    built.raise_for_blocking()
    uri, digest, size = data_plane.put_frame(built.frame, *_table_parts(spec, built.table, "parquet"))
    meta = {**built.meta, "uri": uri, "content_hash": digest, "bytes": size}
    data_plane.put_json(meta, *_table_parts(spec, built.table, "json"))
    built.meta = meta
    return meta


def materialise_training_table(
    spec: GraphSpec, query: NamedQuery, data_plane: DataPlane, progress: Callable[[str], None] | None = None
) -> tuple[TrainingTable, dict]:
    """Build, audit and publish one query's training table; return it and the metadata written."""
    frames, metas = read_published_tables(spec, data_plane)
    schema = GraphSchema.from_table_metadata(spec, metas)
    with query_errors_in_place(query, untrusted_column_names(spec, metas)):
        result = build_training_table(query.text, schema, frames, query.anchors, progress)
    parts = (spec.graph_name, "training_tables")
    uri, digest, size = data_plane.put_frame(result.table, *parts, f"{query.name}.parquet")
    meta = {
        **result.meta,
        "name": query.name,
        "uri": uri,
        "content_hash": digest,
        "bytes": size,
        "tables": {table: metas[table].get("content_hash") for table in spec.tables},
    }
    data_plane.put_json(meta, *parts, f"{query.name}.json")
    return result, meta
