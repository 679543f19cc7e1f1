"""Predictions and embeddings for chosen (entity, anchor) rows, written atomically as Parquet.

One code path for the daily `predictions` asset (rows = what the query's FOR EACH + WHERE select at the
partition's anchor, `select_entities`), the `embeddings` asset and `kumo predict` (rows from the user's own
table). Rows stream through `serving.scoring` in bounded chunks into a local temporary Parquet file that is
then published in one step (rename, or one S3 upload), so a reader never sees half a partition.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from relational.keys import NODE_ID
from relational.pql.audit import audit_entity_selection
from relational.pql.binder import bind_query
from relational.pql.compiler import select_entities
from relational.pql.parser import parse_query
from relational.schema import GraphSchema
from relational.spec import GraphSpec
from serving.outputs import OutputContext, output_schema, prediction_frame
from serving.scoring import CHUNK_ROWS, ScoredChunk, ScoringInputs, embedding_chunks, score_chunks
from serving.served_model import GBDTMember, GNNMember, ServedModel, ServingError, data_version
from stores.feature_store import StoredFeatures
from stores.graph_store import StoredGraph

__all__ = [
    "PredictionRun",
    "ScoringData",
    "entities_at",
    "resolve_rows",
    "write_embeddings",
    "write_predictions",
]

DAY = 86_400


@dataclass
class ScoringData:
    """Everything rows are scored against: the published tables, their schema and the opened stores."""

    spec: GraphSpec
    frames: Mapping[str, pl.DataFrame]  # may read each table when first used
    metas: dict[str, dict]
    graph: StoredGraph
    features: StoredFeatures
    node_keys: Callable[[str], pl.DataFrame]  # node type -> its keys in node-id order (the graph store's)

    @cached_property
    def schema(self) -> GraphSchema:
        return GraphSchema.from_table_metadata(self.spec, self.metas)

    @property
    def version(self) -> str:
        return data_version(self.graph.version, self.features.version,
                            {name: meta.get("content_hash") for name, meta in self.metas.items()})  # fmt: skip

    def first_time(self) -> int | None:
        """The earliest event time of any table (anchors before it have nothing to read)."""
        times = [times.min() for times in self._sorted_times.values() if len(times)]
        return int(min(times)) if times else None

    def data_age_days(self, anchors: np.ndarray) -> np.ndarray:
        """Per anchor: days since the newest event visible at it (NaN when none is)."""
        newest = np.full(len(anchors), np.iinfo(np.int64).min, dtype=np.int64)
        for times in self._sorted_times.values():
            position = np.searchsorted(times, anchors, side="right")
            seen = position > 0
            newest[seen] = np.maximum(newest[seen], times[position[seen] - 1])
        return np.where(newest > np.iinfo(np.int64).min, (anchors - newest) / DAY, np.nan)

    @cached_property
    def _sorted_times(self) -> dict[str, np.ndarray]:
        return {
            name: np.sort(np.asarray(times, dtype=np.int64)) for name, times in self.graph.node_times.items()
        }


@dataclass
class PredictionRun:
    """What one scoring pass wrote: where, how many rows, which versions, and the scores for drift checks."""

    uri: str
    rows: int
    model_version: str
    data_version: str
    seconds: float
    audit: dict = field(default_factory=dict)
    scores: np.ndarray | None = None  # one number per row (probability, value or top probability)
    skipped: pl.DataFrame | None = None  # rows left out with --skip-invalid, and why
    preview: pl.DataFrame | None = None  # the highest-scored rows (with their score in ``_score``)
    inputs: dict[str, np.ndarray] | None = None  # a GBDT's top input columns, sampled from the scored rows


def entities_at(query_text: str, data: ScoringData, anchor: int) -> tuple[pl.DataFrame, dict, str]:
    """The (entity, anchor_time) rows the query's FOR EACH + WHERE select at ``anchor``, their leakage audit,
    and the entity table."""
    bound = bind_query(parse_query(query_text), data.schema)
    compiled = select_entities(bound, data.frames, [int(anchor)])
    return compiled.table, audit_entity_selection(bound, compiled.provenance), bound.entity_table


def resolve_rows(
    rows: pl.DataFrame,
    data: ScoringData,
    entity_table: str,
    skip_invalid: bool = False,
    where: str = "entities",
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Check user rows (``entity``, ``anchor_time``) and attach node ids: (valid rows, skipped rows with why).

    Unknown entities and anchors before the data begins are errors that name the rows, unless
    ``skip_invalid``; they are never scored as NaN.
    """
    missing = [column for column in ("entity", "anchor_time") if column not in rows.columns]
    if missing:
        raise ServingError(f"{where}: missing column(s) {missing}; it needs `entity` ({entity_table}'s key) and "
                           f"`anchor_time` (a date or UTC time), has {rows.columns}")  # fmt: skip
    rows = rows.select("entity", _as_seconds(rows, "anchor_time", where))
    keys = data.node_keys(entity_table)
    key = keys.columns[0]
    lookup = keys.select(pl.col(key).alias("entity"), pl.int_range(pl.len(), dtype=pl.Int64).alias("_node"))
    table_ids = data.frames[entity_table].select(
        pl.col(key).alias("entity"), pl.col(NODE_ID).alias("_table_node")
    )
    try:
        rows = rows.with_columns(pl.col("entity").cast(lookup.schema["entity"]))
    except pl.exceptions.InvalidOperationError:
        raise ServingError(f"{where}: `entity` values must be {entity_table}.{key} values "
                           f"({lookup.schema['entity']}), got {rows.schema['entity']}") from None  # fmt: skip
    rows = rows.join(lookup, on="entity", how="left", maintain_order="left")
    rows = rows.join(table_ids, on="entity", how="left", maintain_order="left")
    first = data.first_time()
    reasons = (pl.when(pl.col("_node").is_null()).then(pl.lit(f"unknown {entity_table}.{key}"))
               .when(pl.col("anchor_time").is_null()).then(pl.lit("no anchor_time"))
               .when(pl.col("anchor_time") < (first if first is not None else 0))
               .then(pl.lit("anchor before the data begins")).otherwise(None))  # fmt: skip
    rows = rows.with_columns(reasons.alias("_why"), pl.int_range(pl.len()).alias("_row"))
    bad = rows.filter(pl.col("_why").is_not_null())
    if bad.height and not skip_invalid:
        shown = "; ".join(
            f"row {r} ({e!r}): {why}" for r, e, why in bad.select("_row", "entity", "_why").head(5).rows()
        )
        raise ServingError(f"{where}: {bad.height} row(s) cannot be scored: {shown}"
                           f"{' ...' if bad.height > 5 else ''}. Fix them, or pass --skip-invalid to leave them out "
                           "(they are then listed in the report)")  # fmt: skip
    skipped = bad.select(pl.col("_row").alias("row"), "entity", "anchor_time", pl.col("_why").alias("reason"))
    return rows.filter(pl.col("_why").is_null()).drop("_why", "_row"), skipped


def write_predictions(
    served: ServedModel,
    data: ScoringData,
    rows: pl.DataFrame,
    publish: Callable[[Path], str],
    entity_table: str,
    chunk_rows: int = CHUNK_ROWS,
    threads: int | None = None,
) -> PredictionRun:
    """Score resolved ``rows`` (`resolve_rows`) with the served model and publish one Parquet file."""
    started = time.perf_counter()
    inputs = _inputs(
        data, rows, entity_table, threads, any(isinstance(m, GBDTMember) for m in served.members)
    )
    inputs.link = served.link
    context = OutputContext(served.task_type, rows.schema["entity"], _classes(served.members[0]),
                            _target_keys(served, data), _threshold(served), served.version, data.version)  # fmt: skip
    scores: list[np.ndarray] = []
    sampled: list[dict[str, np.ndarray]] = []
    checked, top = 0, None

    def frames() -> Iterator[pl.DataFrame]:
        nonlocal checked, top
        for chunk in score_chunks(served, inputs, chunk_rows):
            checked += chunk.sampled_nodes_checked
            if chunk.inputs is not None:
                sampled.append(chunk.inputs)
            scores.append(one_score(served.task_type, chunk.outputs))
            frame = _frame(context, rows, inputs, chunk, data)
            top = _top_rows(top, frame, scores[-1])
            yield frame

    uri, written = _publish_parquet(frames(), output_schema(context), publish)
    return PredictionRun(uri, written, served.version, data.version, time.perf_counter() - started,
                         {"sampled_nodes_checked": checked, "later_than_anchor": 0},
                         np.concatenate(scores) if scores else np.zeros(0), preview=top,
                         inputs={name: np.concatenate([part[name] for part in sampled]) for name in sampled[0]}
                         if sampled else None)  # fmt: skip


def _top_rows(
    top: pl.DataFrame | None, frame: pl.DataFrame, scores: np.ndarray, keep: int = 10
) -> pl.DataFrame:
    """The ``keep`` rows with the highest watched score so far (the first rows when there is no score)."""
    if len(scores) == frame.height:
        frame = frame.with_columns(pl.Series("_score", scores)).sort(
            "_score", descending=True, nulls_last=True
        )
    else:
        frame = frame.with_columns(pl.lit(None, pl.Float64).alias("_score"))
    frame = frame.head(keep)
    merged = frame if top is None else pl.concat([top, frame])
    return merged.sort("_score", descending=True, nulls_last=True, maintain_order=True).head(keep)


def write_embeddings(member: GNNMember, data: ScoringData, rows: pl.DataFrame, publish: Callable[[Path], str],
                     entity_table: str, chunk_rows: int = CHUNK_ROWS, threads: int | None = None) -> PredictionRun:  # fmt: skip
    """The GNN's entity embeddings as ``entity, anchor_time, embedding (fixed-size float32 list),
    model_version, data_version``, published as one Parquet file."""
    started = time.perf_counter()
    inputs = _inputs(data, rows, entity_table, threads, False)
    version = f"gnn:{member.run_key}"
    width = int(member.model_config.channels)
    schema = {"entity": rows.schema["entity"], "anchor_time": pl.Datetime("us", "UTC"),
              "embedding": pl.Array(pl.Float32, width), "model_version": pl.String, "data_version": pl.String}  # fmt: skip

    def frames() -> Iterator[pl.DataFrame]:
        for chunk in embedding_chunks(member, inputs, chunk_rows):
            part = rows.slice(chunk.start, chunk.stop - chunk.start)
            yield pl.DataFrame({
                "entity": part["entity"],
                "anchor_time": pl.from_epoch(part["anchor_time"], "s").dt.replace_time_zone("UTC"),
                "embedding": pl.Series(chunk.outputs.astype(np.float32), dtype=pl.Array(pl.Float32, width)),
                "model_version": [version] * part.height, "data_version": [data.version] * part.height,
            }).cast(schema)  # fmt: skip

    uri, written = _publish_parquet(frames(), schema, publish)
    return PredictionRun(uri, written, version, data.version, time.perf_counter() - started)


def _inputs(
    data: ScoringData, rows: pl.DataFrame, entity_table: str, threads: int | None, tables: bool
) -> ScoringInputs:
    return ScoringInputs(data.graph, data.features, data.frames if tables else None, data.schema if tables else None,
                         entity_table, rows["_node"].to_numpy().astype(np.int64),
                         rows["anchor_time"].to_numpy().astype(np.int64), threads,
                         rows["_table_node"].to_numpy().astype(np.int64))  # fmt: skip


def _frame(context: OutputContext, rows: pl.DataFrame, inputs: ScoringInputs, chunk: ScoredChunk,
           data: ScoringData) -> pl.DataFrame:  # fmt: skip
    anchors = inputs.anchors[chunk.start : chunk.stop]
    return prediction_frame(context, rows["entity"].slice(chunk.start, chunk.stop - chunk.start), anchors,
                            chunk.outputs, chunk.scores, data.data_age_days(anchors), chunk.probabilities)  # fmt: skip


def _publish_parquet(
    frames: Iterator[pl.DataFrame], schema: dict, publish: Callable[[Path], str]
) -> tuple[str, int]:
    """Write chunks to a local temporary Parquet file, then hand it to ``publish`` (an atomic move)."""
    written = 0
    with tempfile.TemporaryDirectory(prefix="kumo-predict-") as scratch:
        path = Path(scratch) / "part.parquet"
        writer = None
        try:
            for frame in frames:
                table = frame.to_arrow()
                writer = writer or pq.ParquetWriter(path, table.schema, compression="zstd")
                writer.write_table(table)
                written += frame.height
            if writer is None:  # no rows: still a file with the right columns
                pl.DataFrame(schema=schema).write_parquet(path, compression="zstd")
        finally:
            if writer is not None:
                writer.close()
        return publish(path), written


def one_score(task_type: str, outputs: np.ndarray) -> np.ndarray:
    """The number drift checks watch: the score, the value, or the top class probability."""
    values = np.asarray(outputs, dtype=np.float64)
    if task_type in ("binary_classification", "regression"):
        return values.reshape(len(values))
    if task_type in ("multiclass_classification", "multilabel_classification"):
        return values.reshape(len(values), -1).max(axis=1) if len(values) else np.zeros(0)
    if task_type == "forecasting":
        return values.reshape(len(values), -1)[:, 0] if len(values) else np.zeros(0)
    return np.zeros(0)  # ranked lists: no single score to watch


def _classes(member: Any) -> list | None:
    if isinstance(member, GNNMember):
        return list(member.spec.classes) or None
    classes = member.model.classes_
    return None if classes is None else list(classes)


def _target_keys(served: ServedModel, data: ScoringData) -> pl.Series | None:
    if served.task_type != "link_prediction":
        return None
    member = served.members[0]  # ranked outputs are never blended
    if isinstance(member, GNNMember):  # graph-store node ids of the target type
        return data.node_keys(member.spec.target_type).to_series(0)
    return pl.Series(
        member.model.classes_
    )  # a GBDT ranker's ids: the target table's rows, keys saved with it


def _threshold(served: ServedModel) -> float | None:
    return None if served.threshold is None else float(served.threshold["value"])


def _as_seconds(rows: pl.DataFrame, column: str, where: str) -> pl.Expr:
    dtype = rows.schema[column]
    if dtype.is_integer():
        return pl.col(column).cast(pl.Int64)
    if isinstance(dtype, pl.Datetime):
        zoned = pl.col(column).dt.replace_time_zone("UTC") if dtype.time_zone is None else pl.col(column)
        return zoned.dt.epoch("s").alias(column)
    if dtype == pl.Date:
        return pl.col(column).cast(pl.Datetime("us")).dt.epoch("s").alias(column)
    if dtype == pl.String:
        parsed = pl.col(column).str.to_datetime(time_zone="UTC", strict=False)
        return parsed.dt.epoch("s").alias(column)
    raise ServingError(
        f"{where}: anchor_time must be a date, a datetime, ISO text or epoch seconds, got {dtype}"
    )
