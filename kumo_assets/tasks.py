"""Training tables: one Dagster asset per query of a graph's queries.yaml (an asset factory).

The asset is thin: `materialise_training_table` reads the published tables, builds and audits the table
(`relational.pql`), and writes ``<graph>/training_tables/<name>.parquet`` plus its metadata atomically.
"""

import time

import dagster as dg
import polars as pl

from kumo_assets.asset_keys import query_group, table_asset_key, training_table_key
from kumo_assets.execution import CPU_BOUND
from kumo_assets.ingest import check_result, format_time
from kumo_assets.ui_pictures import picture_metadata
from kumo_assets.ui_tables import ui_table
from relational.pql.compiler import SPLITS
from relational.pql.parser import parse_query
from relational.pql.queries import NamedQuery
from relational.pql.training_table import (
    MIN_LABELS_PER_SPLIT,
    TrainingTable,
    task_description,
    training_table_checks,
)
from relational.spec import GraphSpec
from stores.data_plane import DataPlane
from stores.tables import materialise_training_table
from training.pictures import label_histogram

__all__ = ["build_training_table_assets", "label_table", "training_table_metadata"]


def build_training_table_assets(spec: GraphSpec, queries: dict[str, NamedQuery]) -> list[dg.AssetsDefinition]:
    """One asset per named query; a syntax error fails at load time (so `definitions validate` catches it)."""
    for query in queries.values():
        parse_query(query.text)
    return [_training_table_asset(spec, query) for query in queries.values()]


# A failing leakage audit raises before anything is written, so nothing downstream runs: that is its block.
# (Dagster's own blocking flag cannot be used here: the study's graph asset fans its inputs in, and a blocking
# check upstream of it breaks the run plan.) The UI therefore labels the check non-blocking, so its description
# says plainly what a failure does.
_CHECKS = {
    "leakage_audit": "Blocks in effect, whatever the label says: a failing audit stops the training table from "
    "being written, so the step fails and nothing downstream runs. Passes when no label or filter reads past "
    "its anchor and the splits are in time order.",
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
        group_name=query_group(spec, query.name),
        description=f"Labelled (entity, anchor time) rows per split, leakage-audited, for `{query.text}`",
        kinds={"polars", "parquet"},
    )
    def _training_table(
        context: dg.AssetExecutionContext, data_plane: dg.ResourceParam[DataPlane]
    ) -> dg.MaterializeResult:
        started = time.perf_counter()
        result, meta = materialise_training_table(spec, query, data_plane, context.log.info)
        checks = [check_result(outcome) for outcome in training_table_checks(meta)]
        metadata = training_table_metadata(result, meta, time.perf_counter() - started)
        histogram = label_pictures(result, meta["task_type"])
        metadata = {**picture_metadata(data_plane, key, histogram, context.run.run_id[:8]), **metadata}
        return dg.MaterializeResult(metadata=metadata, check_results=checks)

    return _training_table


SPLIT_COLUMNS = [("split", "string"), ("rows", "int"), ("anchors", "int"), ("first anchor", "string"),
                 ("last anchor", "string")]  # fmt: skip


def training_table_metadata(result: TrainingTable, meta: dict, seconds: float) -> dict:
    """What the UI shows for a training table: the query, its splits and labels as tables, then the details."""
    anchors = meta["anchors"]
    splits = [[split, meta["rows"][split], anchors[split]["count"], format_time(anchors[split]["first"], ""),
               format_time(anchors[split]["last"], "")] for split in SPLITS]  # fmt: skip
    audited = ", ".join(f"{name.replace('_', ' ')} {value}" for name, value in meta["leakage_audit"].items()
                        if name != "passed")  # fmt: skip
    return {
        # text wraps inside the page; a code block of a long query would run past its right edge
        "query": dg.MetadataValue.text(meta["query"]),
        "task_type": dg.MetadataValue.text(task_description(meta)),
        "dagster/row_count": dg.MetadataValue.int(result.table.height),
        "splits": ui_table(SPLIT_COLUMNS, splits),
        "labels": label_table(meta["label_distribution"], meta["task_type"]),
        "leakage_audit": dg.MetadataValue.text(f"passed: {audited}"),
        "build_seconds": dg.MetadataValue.float(round(seconds, 3)),
        "dagster/uri": dg.MetadataValue.path(meta["uri"]),
        "content_hash": dg.MetadataValue.text(meta["content_hash"]),
        "parsed": dg.MetadataValue.json(meta["parsed"]),  # last: the structure is the point, for the curious
    }


def label_pictures(result: TrainingTable, task_type: str) -> dict[str, bytes | None]:
    """The label distribution per split as a histogram (scalar labels; list labels have no single axis)."""
    table = result.table
    if isinstance(table.schema["label"], (pl.List, pl.Array)):
        return {}
    labels = {
        split: table.filter(pl.col("split") == split)["label"].drop_nulls().to_numpy() for split in SPLITS
    }
    return {"label_distribution": label_histogram(labels, task_type)}


def label_table(distribution: dict, task_type: str) -> dg.MetadataValue:
    """The labels per split as a table: counts and positive rate (binary), moments (numeric), top classes."""
    if task_type == "binary_classification":
        rows = [[split, s["rows"], s.get("positives", 0), s.get("positive_rate", float("nan"))]
                for split, s in distribution.items()]  # fmt: skip
        return ui_table(
            [("split", "string"), ("rows", "int"), ("positives", "int"), ("positive rate", "float")], rows
        )
    moments = ("mean", "std", "min", "median", "max")
    if all("top" not in s for s in distribution.values()):
        rows = [[split, s["rows"], *[s.get(name) if s.get(name) is not None else float("nan") for name in moments]]
                for split, s in distribution.items()]  # fmt: skip
        return ui_table([("split", "string"), ("rows", "int"), *[(name, "float") for name in moments]], rows)
    rows = [[split, s["rows"], ", ".join(f"{value} ({count})" for value, count in s.get("top", [])[:6])]
            for split, s in distribution.items()]  # fmt: skip
    return ui_table([("split", "string"), ("rows", "int"), ("most frequent labels (count)", "string")], rows)
