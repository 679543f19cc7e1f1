"""Ingest: one Dagster asset per table of a graph spec, with asset checks and rich UI metadata.

The asset is a thin shell: `ingest_table` (read + validate, no writes) and `publish_table` (atomic
write) are plain functions tested without Dagster. Write-audit-publish: checks run on the built table
before anything is written, and a failed blocking check leaves the previous version untouched.
"""

import time

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    ResourceParam,
    TableColumn,
    TableSchema,
    asset,
)

from kumo_assets.asset_keys import table_asset_key, tables_group
from kumo_assets.execution import CPU_BOUND
from kumo_assets.ui_tables import human_bytes, ui_table
from relational.checks import CheckOutcome, ingest_check_names
from relational.spec import GraphSpec
from relational.table_build import (
    BuiltTable,
)
from stores.data_plane import DataPlane
from stores.tables import ingest_table, publish_table

__all__ = ["build_ingest_assets", "check_result"]

_BLOCKING = {"primary_key", "event_time"}
_CHECK_DESCRIPTIONS = {
    "primary_key": "Primary key is unique and non-null (blocking: nothing is written otherwise).",
    "event_time": "Every non-null event time parses to UTC seconds (blocking).",
    "column_types": "Semantic types per column; warns about feature columns with no signal.",
}


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
        group_name=tables_group(spec),
        description=description,
        kinds={"polars", "parquet"},
    )
    def _ingest(context: AssetExecutionContext, data_plane: ResourceParam[DataPlane]):
        started = time.perf_counter()
        built = ingest_table(spec, table, data_plane, data_plane.object_store.storage_options())
        for outcome in built.checks:
            yield check_result(outcome)
        meta = publish_table(spec, built, data_plane)
        context.log.info(f"{table}: {meta['rows']} rows -> {meta['uri']}")
        yield MaterializeResult(metadata=table_metadata(built, time.perf_counter() - started))

    return _ingest


def check_result(outcome: CheckOutcome) -> AssetCheckResult:
    """A check computed without Dagster as the UI shows it: blocking failures are errors, others warnings."""
    return AssetCheckResult(check_name=outcome.name, passed=outcome.passed, description=outcome.description,
                            severity=AssetCheckSeverity.ERROR if outcome.blocking else AssetCheckSeverity.WARN,
                            metadata=outcome.metadata)  # fmt: skip


def table_metadata(built: BuiltTable, seconds: float) -> dict:
    """What the UI shows for an ingested table: size, schema with stypes, nulls, keys, time range, preview.

    An untrusted table (a source outside graph.yaml's folder and $KUMO_SHARED_DATA, `BuiltTable.trusted`):
    no column names, values or times, as its messages quote none (a CSV's header is the file's own text).
    """
    if not built.trusted:
        return _sizes(built, seconds) | {
            "columns_and_values": MetadataValue.text(
                f"not shown: a source of {built.table!r} lies outside the folder of graph.yaml and "
                "$KUMO_SHARED_DATA, so the UI quotes none of its names or values (set KUMO_SHARED_DATA to the "
                "data's root folder to show them)"
            ),
        }
    meta, frame = built.meta, built.frame
    user_columns = [column for column in frame.columns if not column.startswith("_kumo_")]
    stypes = meta["stypes"]
    null_rates = {
        column: frame.get_column(column).null_count() / max(frame.height, 1) for column in user_columns
    }
    metadata = {
        **_sizes(built, seconds),
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
        "stypes": ui_table(
            [("column", "string"), ("stype", "string"), ("decided by", "string"), ("reason", "string"),
             ("null rate", "float")],
            [[column, d["stype"], d["source"], d["reason"], null_rates.get(column, 0.0)] for column, d in stypes.items()],
        ),
        "preview": ui_table([(column, "string") for column in user_columns],
                            [[_preview_cell(value) for value in row] for row in frame.select(user_columns).head(5).rows()]),
    }  # fmt: skip
    if meta["foreign_keys"]:
        metadata["foreign_keys"] = ui_table(
            [("key", "string"), ("points at", "string"), ("null rows", "int"), ("dangling rows", "int"),
             ("dangling rate", "float")],
            [[fk["name"], fk["table"], fk["null_rows"], fk["dangling_rows"], fk["dangling_rate"]]
             for fk in meta["foreign_keys"]],
        )  # fmt: skip
    if meta["time"]:
        time_meta = meta["time"]
        metadata["time_range"] = MetadataValue.text(
            f"{format_time(time_meta['min'])} .. {format_time(time_meta['max'])} ({time_meta['how']})"
        )
        metadata["rows_dropped_without_time"] = MetadataValue.int(time_meta["dropped_null_rows"])
    return metadata


def _sizes(built: BuiltTable, seconds: float) -> dict:
    """Rows, where the table was written, its hash and size, and the build time: no names or values."""
    meta = built.meta
    return {
        "dagster/row_count": MetadataValue.int(meta["rows"]),
        "dagster/uri": MetadataValue.path(meta["uri"]),
        "content_hash": MetadataValue.text(meta["content_hash"]),
        "size": MetadataValue.text(human_bytes(meta["bytes"])),
        "build_seconds": MetadataValue.float(round(seconds, 3)),
    }


def _stype_text(decision: dict | None) -> str:
    return "" if decision is None else f"{decision['stype']}: {decision['reason']}"


def format_time(seconds: int | None, missing: str = "none") -> str:
    """UTC seconds as text for the UI (one format for every asset's metadata)."""
    if seconds is None:
        return missing
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def _preview_cell(value) -> str:
    """A preview cell as short text (a long string or list would widen the whole table)."""
    text = "" if value is None else str(value)
    return text if len(text) <= 40 else text[:39] + "…"
