"""Ingest: one Dagster asset per table of a graph spec, with asset checks and rich UI metadata.

The asset is a thin shell: `ingest_table` (read + validate, no writes) and `publish_table` (atomic
write) are plain functions tested without Dagster. Write-audit-publish: checks run on the built table
before anything is written, and a failed blocking check leaves the previous version untouched.
"""

import time
from collections.abc import Mapping

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableSchema,
    asset,
)

from kumo_assets.asset_keys import table_asset_key
from kumo_assets.execution import CPU_BOUND
from relational.checks import ingest_check_names
from relational.errors import IngestError
from relational.graph_tables import read_implied_keys
from relational.keys import NODE_ID
from relational.sources import read_table_source
from relational.spec import GraphSpec
from relational.table_build import (
    EVENT_TIME,
    BuiltTable,
    ParentKeys,
    build_implied_table,
    build_table,
)
from stores.data_plane import DataPlane

__all__ = ["build_ingest_assets", "ingest_table", "load_parent_keys", "publish_table"]

_BLOCKING = {"primary_key", "event_time"}
_CHECK_DESCRIPTIONS = {
    "primary_key": "Primary key is unique and non-null (blocking: nothing is written otherwise).",
    "event_time": "Every non-null event time parses to UTC seconds (blocking).",
    "column_types": "Semantic types per column; warns about feature columns with no signal.",
}


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


def build_ingest_assets(spec: GraphSpec) -> list[AssetsDefinition]:
    """One asset per table of ``spec`` (an asset factory: a user's spec gives the user's assets)."""
    return [_table_asset(spec, table) for table in spec.tables]


def _table_asset(spec: GraphSpec, table: str) -> AssetsDefinition:
    table_spec = spec.table(table)
    key = table_asset_key(spec, table)
    foreign_keys = spec.foreign_keys(table)
    names = ingest_check_names(
        bool(table_spec.primary_key_columns) and not table_spec.implied,
        table_spec.has_time,
        [fk.name for fk in foreign_keys],
    )
    check_specs = [
        AssetCheckSpec(
            name,
            asset=key,
            blocking=name in _BLOCKING,
            description=_CHECK_DESCRIPTIONS.get(
                name, "Share of non-null foreign keys with no parent row (warns)."
            ),
        )
        for name in names
    ]
    if table_spec.implied:
        description = f"Entity table `{table}` implied by the foreign keys that point at it (no source)."
    else:
        description = f"Validated, typed `{table}` from {', '.join(table_spec.sources)}."

    @asset(
        op_tags=CPU_BOUND,
        key=key,
        deps=[table_asset_key(spec, parent) for parent in spec.parents(table)],
        check_specs=check_specs,
        group_name=f"{spec.graph_name}_ingest",
        description=description,
        kinds={"polars", "parquet"},
    )
    def _ingest(context: AssetExecutionContext, data_plane: DataPlane):
        started = time.perf_counter()
        built = ingest_table(spec, table, data_plane, data_plane.object_store.storage_options())
        for outcome in built.checks:
            yield AssetCheckResult(
                check_name=outcome.name,
                passed=outcome.passed,
                severity=AssetCheckSeverity.ERROR if outcome.blocking else AssetCheckSeverity.WARN,
                description=outcome.description,
                metadata=outcome.metadata,
            )
        meta = publish_table(spec, built, data_plane)
        context.log.info(f"{table}: {meta['rows']} rows -> {meta['uri']}")
        yield MaterializeResult(metadata=table_metadata(built, time.perf_counter() - started))

    return _ingest


def table_metadata(built: BuiltTable, seconds: float) -> dict:
    """What the UI shows for an ingested table: size, schema with stypes, nulls, keys, time range, preview."""
    meta, frame = built.meta, built.frame
    user_columns = [column for column in frame.columns if not column.startswith("_kumo_")]
    stypes = meta["stypes"]
    null_rates = {
        column: frame.get_column(column).null_count() / max(frame.height, 1) for column in user_columns
    }
    metadata = {
        "dagster/row_count": MetadataValue.int(meta["rows"]),
        "dagster/uri": MetadataValue.path(meta["uri"]),
        "dagster/column_schema": MetadataValue.table_schema(
            TableSchema(
                columns=[
                    TableColumn(
                        column, str(frame.schema[column]), description=_stype_text(stypes.get(column))
                    )
                    for column in frame.columns
                ]
            )
        ),
        "content_hash": MetadataValue.text(meta["content_hash"]),
        "bytes": MetadataValue.int(meta["bytes"]),
        "build_seconds": MetadataValue.float(round(seconds, 3)),
        "stypes": MetadataValue.md(
            markdown_table(
                ["column", "stype", "decided by", "reason", "null rate"],
                [
                    [column, d["stype"], d["source"], d["reason"], f"{null_rates.get(column, 0.0):.1%}"]
                    for column, d in stypes.items()
                ],
            )
        ),
        "preview": MetadataValue.md(
            markdown_table(
                user_columns, [list(map(str, row)) for row in frame.select(user_columns).head(5).rows()]
            )
        ),
    }
    if meta["foreign_keys"]:
        metadata["foreign_keys"] = MetadataValue.md(
            markdown_table(
                ["key", "points at", "null rows", "dangling rows", "dangling rate"],
                [
                    [
                        fk["name"],
                        fk["table"],
                        fk["null_rows"],
                        fk["dangling_rows"],
                        f"{fk['dangling_rate']:.2%}",
                    ]
                    for fk in meta["foreign_keys"]
                ],
            )
        )
    if meta["time"]:
        time_meta = meta["time"]
        metadata["time_range"] = MetadataValue.text(
            f"{format_time(time_meta['min'])} .. {format_time(time_meta['max'])} ({time_meta['how']})"
        )
        metadata["rows_dropped_without_time"] = MetadataValue.int(time_meta["dropped_null_rows"])
    return metadata


def _stype_text(decision: dict | None) -> str:
    return "" if decision is None else f"{decision['stype']}: {decision['reason']}"


def format_time(seconds: int | None, missing: str = "none") -> str:
    """UTC seconds as text for the UI (one format for every asset's metadata)."""
    if seconds is None:
        return missing
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")[:80]

    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in rows]
    return "\n".join(lines)
