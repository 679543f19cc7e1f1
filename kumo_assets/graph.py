"""The graph_store asset: the validated tables of a graph as a versioned, memory-mappable CSC store.

Thin shell over `build_graph_from_tables` (plain function) and `stores.graph_store.build_graph_store`.
"""

import time
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    ResourceParam,
    asset,
)

from kumo_assets.asset_keys import graph_store_key, table_asset_key
from kumo_assets.execution import CPU_BOUND
from kumo_assets.ingest import markdown_table
from relational.graph_tables import read_published_tables
from relational.spec import GraphSpec
from stores.data_plane import DataPlane
from stores.graph_store import GraphStores
from stores.store_inputs import build_graph_from_tables
from stores.store_sync import publish_version

__all__ = ["build_graph_store_asset"]


def build_graph_store_asset(spec: GraphSpec) -> AssetsDefinition:
    @asset(
        op_tags=CPU_BOUND,
        key=graph_store_key(spec),
        deps=[table_asset_key(spec, table) for table in spec.tables],
        group_name=f"{spec.graph_name}_graph",
        description="CSC adjacency per edge type (two per foreign key), time-sorted, memory-mapped by trainers.",
        kinds={"numpy"},
    )
    def _graph_store(
        context: AssetExecutionContext,
        data_plane: ResourceParam[DataPlane],
        graph_store: ResourceParam[GraphStores],
    ) -> MaterializeResult:
        started = time.perf_counter()
        tables, _ = read_published_tables(spec, data_plane)
        path, manifest = build_graph_from_tables(spec, tables, graph_store.directory(spec.graph_name))
        context.log.info(f"graph store version {manifest['version']} at {path}")
        published = publish_version(data_plane, path, spec.graph_name)
        metadata = graph_metadata(manifest, path, time.perf_counter() - started)
        return MaterializeResult(metadata={**metadata, "data_plane_uri": MetadataValue.path(published)})

    return _graph_store


def graph_metadata(manifest: dict, path: Path, seconds: float) -> dict:
    nodes = [
        [name, meta["count"], "yes" if meta["time"] else "static"]
        for name, meta in manifest["node_types"].items()
    ]
    edges = [
        ["/".join(meta["type"]), meta["edges"], f"{meta['degree']['mean']:.2f}", meta["degree"]["max"],
         meta["dropped_rows"]]
        for meta in manifest["edge_types"].values()
    ]  # fmt: skip
    return {
        "version": MetadataValue.text(manifest["version"]),
        "dagster/uri": MetadataValue.path(str(path)),
        "nodes": MetadataValue.md(markdown_table(["node type", "nodes", "time"], nodes)),
        "edges": MetadataValue.md(
            markdown_table(
                ["edge type", "edges", "mean degree", "max degree", "dropped (null/dangling)", "ids"], edges
            )
        ),
        "total_edges": MetadataValue.int(manifest["edges"]),
        "bytes_per_edge": MetadataValue.float(round(manifest["bytes_per_edge"], 3)),
        "id_dtypes": MetadataValue.text(
            f"indices {manifest['index_dtype']}, offsets {manifest['indptr_dtype']}"
        ),
        "bytes": MetadataValue.int(manifest["bytes"]),
        "build_seconds": MetadataValue.float(round(seconds, 3)),
    }
