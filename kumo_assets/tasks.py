"""Training tables: one Dagster asset per query of a graph's queries.yaml (an asset factory).

The asset is thin: `materialise_training_table` reads the published tables, builds and audits the table
(`relational.pql`), and writes ``<graph>/training_tables/<name>.parquet`` plus its metadata atomically.
"""

import time

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    MaterializeResult,
    MetadataValue,
    ResourceParam,
    asset,
)

from kumo_assets.asset_keys import table_asset_key, training_table_key
from kumo_assets.execution import CPU_BOUND
from kumo_assets.ingest import format_time, markdown_table
from relational.pql.compiler import SPLITS
from relational.pql.parser import parse_query
from relational.pql.queries import NamedQuery
from relational.pql.training_table import TrainingTable
from relational.spec import GraphSpec
from stores.data_plane import DataPlane
from stores.tables import materialise_training_table

__all__ = ["build_training_table_assets", "label_plot"]


def build_training_table_assets(spec: GraphSpec, queries: dict[str, NamedQuery]) -> list[AssetsDefinition]:
    """One asset per named query; a syntax error fails at load time (so `definitions validate` catches it)."""
    for query in queries.values():
        parse_query(query.text)
    return [_training_table_asset(spec, query) for query in queries.values()]


def _training_table_asset(spec: GraphSpec, query: NamedQuery) -> AssetsDefinition:
    @asset(
        op_tags=CPU_BOUND,
        key=training_table_key(spec, query.name),
        deps=[table_asset_key(spec, table) for table in spec.tables],
        group_name=f"{spec.graph_name}_tasks",
        description=f"Training table for `{query.text}`",
        kinds={"polars", "parquet"},
    )
    def _training_table(
        context: AssetExecutionContext, data_plane: ResourceParam[DataPlane]
    ) -> MaterializeResult:
        started = time.perf_counter()
        result, meta = materialise_training_table(spec, query, data_plane, context.log.info)
        return MaterializeResult(
            metadata=training_table_metadata(result, meta, time.perf_counter() - started)
        )

    return _training_table


def training_table_metadata(result: TrainingTable, meta: dict, seconds: float) -> dict:
    rows = [
        [split, meta["rows"][split], meta["anchors"][split]["count"], format_time(meta["anchors"][split]["first"], ""),
         format_time(meta["anchors"][split]["last"], "")]
        for split in SPLITS
    ]  # fmt: skip
    return {
        "dagster/row_count": MetadataValue.int(result.table.height),
        "dagster/uri": MetadataValue.path(meta["uri"]),
        "task_type": MetadataValue.text(meta["task_type"]),
        "query": MetadataValue.md(f"```\n{meta['query']}\n```"),
        "parsed": MetadataValue.json(meta["parsed"]),
        "splits": MetadataValue.md(
            markdown_table(["split", "rows", "anchors", "first anchor", "last anchor"], rows)
        ),
        "label_distribution": MetadataValue.json(meta["label_distribution"]),
        "label_plot": MetadataValue.md(label_plot(result.table, meta["task_type"])),
        "leakage_audit": MetadataValue.json(meta["leakage_audit"]),
        "content_hash": MetadataValue.text(meta["content_hash"]),
        "build_seconds": MetadataValue.float(round(seconds, 3)),
    }


def label_plot(table: pl.DataFrame, task_type: str, width: int = 40) -> str:
    """A text bar chart of the labels per split (Dagster shows it as Markdown)."""
    lines = []
    for split in SPLITS:
        labels = table.filter(pl.col("split") == split).get_column("label")
        lines.append(f"{split} ({labels.len()} rows)")
        if labels.len() == 0:
            continue
        if isinstance(labels.dtype, pl.List):
            labels = labels.explode(empty_as_null=True).drop_nulls()
        if task_type in {"regression", "forecasting"} and labels.dtype.is_numeric():
            counts = labels.hist(bin_count=10)
            bars = [(f"{row[0]:>10.3g}", row[2]) for row in counts.rows()]
        else:
            bars = [
                (f"{value!s:>10}", count) for value, count in labels.value_counts(sort=True).head(12).rows()
            ]
        peak = max(count for _, count in bars) or 1
        lines += [
            f"  {label} | {'#' * round(width * count / peak):<{width}} {count}" for label, count in bars
        ]
    return "```\n" + "\n".join(lines) + "\n```"
