"""Training tables: one Dagster asset per query of a graph's queries.yaml (an asset factory).

The asset is thin: `materialise_training_table` reads the published tables, builds and audits the table
(`relational.pql`), and writes ``<graph>/training_tables/<name>.parquet`` plus its metadata atomically.
"""

import time

import dagster as dg
import polars as pl

from kumo_assets.asset_keys import table_asset_key, training_table_key
from kumo_assets.execution import CPU_BOUND
from kumo_assets.ingest import check_result, format_time, markdown_table
from relational.pql.compiler import SPLITS
from relational.pql.parser import parse_query
from relational.pql.queries import NamedQuery
from relational.pql.training_table import MIN_LABELS_PER_SPLIT, TrainingTable, training_table_checks
from relational.spec import GraphSpec
from stores.data_plane import DataPlane
from stores.tables import materialise_training_table

__all__ = ["build_training_table_assets", "label_plot"]


def build_training_table_assets(spec: GraphSpec, queries: dict[str, NamedQuery]) -> list[dg.AssetsDefinition]:
    """One asset per named query; a syntax error fails at load time (so `definitions validate` catches it)."""
    for query in queries.values():
        parse_query(query.text)
    return [_training_table_asset(spec, query) for query in queries.values()]


# A failing leakage audit raises before anything is written, so nothing downstream runs: that is its block.
# (Dagster's own blocking flag cannot be used here: the study's graph asset fans its inputs in.)
_CHECKS = {
    "leakage_audit": "No label or filter reads past its anchor and the splits are in time order (a failure "
    "writes nothing).",
    "labels_per_split": f"At least {MIN_LABELS_PER_SPLIT} labels per split, of each class when binary (warns).",
}


def _training_table_asset(spec: GraphSpec, query: NamedQuery) -> dg.AssetsDefinition:
    key = training_table_key(spec, query.name)

    @dg.asset(
        op_tags=CPU_BOUND,
        key=key,
        check_specs=[
            dg.AssetCheckSpec(name, asset=key, description=description)
            for name, description in _CHECKS.items()
        ],
        deps=[table_asset_key(spec, table) for table in spec.tables],
        group_name=f"{spec.graph_name}_tasks",
        description=f"Training table for `{query.text}`",
        kinds={"polars", "parquet"},
    )
    def _training_table(
        context: dg.AssetExecutionContext, data_plane: dg.ResourceParam[DataPlane]
    ) -> dg.MaterializeResult:
        started = time.perf_counter()
        result, meta = materialise_training_table(spec, query, data_plane, context.log.info)
        checks = [check_result(outcome) for outcome in training_table_checks(meta)]
        return dg.MaterializeResult(
            metadata=training_table_metadata(result, meta, time.perf_counter() - started),
            check_results=checks,
        )

    return _training_table


def training_table_metadata(result: TrainingTable, meta: dict, seconds: float) -> dict:
    rows = [
        [
            split,
            meta["rows"][split],
            meta["anchors"][split]["count"],
            format_time(meta["anchors"][split]["first"], ""),
            format_time(meta["anchors"][split]["last"], ""),
        ]
        for split in SPLITS
    ]
    return {
        "dagster/row_count": dg.MetadataValue.int(result.table.height),
        "dagster/uri": dg.MetadataValue.path(meta["uri"]),
        "task_type": dg.MetadataValue.text(meta["task_type"]),
        "query": dg.MetadataValue.md(f"```\n{meta['query']}\n```"),
        "parsed": dg.MetadataValue.json(meta["parsed"]),
        "splits": dg.MetadataValue.md(
            markdown_table(["split", "rows", "anchors", "first anchor", "last anchor"], rows)
        ),
        "label_distribution": dg.MetadataValue.json(meta["label_distribution"]),
        "label_plot": dg.MetadataValue.md(label_plot(result.table, meta["task_type"])),
        "leakage_audit": dg.MetadataValue.json(meta["leakage_audit"]),
        "content_hash": dg.MetadataValue.text(meta["content_hash"]),
        "build_seconds": dg.MetadataValue.float(round(seconds, 3)),
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
