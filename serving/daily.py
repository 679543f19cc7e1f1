"""One day's predictions and embeddings of a query: what the partitioned assets call (plain, no Dagster).

A partition ``YYYY-MM-DD`` scores at the anchor 00:00 UTC of that date the entities the query selects there,
writes ``<graph>/predictions/<query>/<date>.parquet`` (or ``embeddings/``) on the data plane and, for
predictions, a health record (``health/<date>.json``: score drift against validation, the share of selected
entities that could not be scored, the model's age) that the asset checks and the new-data sensor read.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from models.blending import blend_outputs
from models.propositional import audit_feature_leakage
from relational.errors import IngestError
from relational.keys import NODE_ID
from relational.pql.queries import NamedQuery
from relational.spec import GraphSpec
from serving.drift import input_drift, population_stability_index
from serving.inputs import input_columns
from serving.predict import (
    PredictionRun,
    ScoringData,
    entities_at,
    one_score,
    resolve_rows,
    write_embeddings,
    write_predictions,
)
from serving.served_model import GBDTMember, ServedModel, ServingError, load_served_model

__all__ = ["DayResult", "anchor_of_day", "embed_day", "open_scoring_data", "predict_day", "validation_scores"]

DAY = 86_400


@dataclass
class DayResult:
    """One partition's output and what its checks report."""

    run: PredictionRun
    anchor: int
    selected: int  # entities the query selected at the anchor
    skipped: int  # of those, entities that could not be scored (e.g. unknown to the graph store)
    health: dict[str, Any]


def anchor_of_day(day: str) -> int:
    """The anchor of a daily partition: 00:00 UTC of that date, in seconds."""
    return int(dt.datetime.combine(dt.date.fromisoformat(day), dt.time(), dt.UTC).timestamp())


class PublishedTables(Mapping):
    """The published tables of a graph, each read from the data plane on first use: a GNN's predictions read
    only the entity table and the tables its WHERE filters, a GBDT's every table."""

    def __init__(self, spec: GraphSpec, data_plane: Any) -> None:
        self.spec, self.data_plane, self.loaded = spec, data_plane, {}

    def __getitem__(self, table: str) -> pl.DataFrame:
        if table not in self.loaded:
            if table not in self.spec.tables:
                raise KeyError(table)
            self.loaded[table] = self.data_plane.get_frame(self.spec.graph_name, "tables", f"{table}.parquet")
        return self.loaded[table]

    def __iter__(self) -> Iterator[str]:
        return iter(self.spec.tables)

    def __len__(self) -> int:
        return len(self.spec.tables)


def open_scoring_data(spec: GraphSpec, data_plane: Any, graph_store: Any, feature_store: Any) -> ScoringData:
    """The published tables (read when first used) and the current graph and feature stores of ``spec``."""
    metas = {}
    for table in spec.tables:
        try:
            metas[table] = data_plane.get_json(spec.graph_name, "tables", f"{table}.json")
        except FileNotFoundError:
            raise IngestError(
                f"table {table!r} is not ingested yet; materialise {spec.graph_name}/{table}"
            ) from None
    graph = graph_store.open(spec.graph_name)
    return ScoringData(spec, PublishedTables(spec, data_plane), metas, graph, feature_store.open(spec.graph_name),
                       lambda node_type: graph_store.node_keys(graph, node_type))  # fmt: skip


def predict_day(spec: GraphSpec, query: NamedQuery, day: str, data_plane: Any, graph_store: Any,
                feature_store: Any, threads: int | None = None) -> DayResult:  # fmt: skip
    """Score the entities ``query`` selects at ``day``'s anchor with the stored best model; publish them."""
    served = load_served_model(data_plane, spec.graph_name, query.name)
    data = open_scoring_data(spec, data_plane, graph_store, feature_store)
    anchor = anchor_of_day(day)
    selected, audit, entity_table = entities_at(query.text, data, anchor)
    rows, skipped = resolve_rows(selected, data, entity_table, skip_invalid=True,
                                 where=f"{spec.graph_name}/{query.name} at {day}")  # fmt: skip
    run = write_predictions(served, data, rows,
                            lambda path: data_plane.put_file(path, spec.graph_name, "predictions", query.name, f"{day}.parquet"),
                            entity_table, threads=threads)  # fmt: skip
    run.audit = {"entity_selection": audit, "sampled_neighbours": run.audit,
                 "gbdt_features": audit_served_features(served, data, rows, entity_table)}  # fmt: skip
    table = data_plane.get_frame(spec.graph_name, "training_tables", f"{query.name}.parquet")
    validation, _ = resolve_rows(table.filter(pl.col("split") == "val").select("entity", "anchor_time"), data,
                                 entity_table, skip_invalid=True)  # fmt: skip
    served_inputs = run.inputs if run.inputs is not None else input_columns(served, data, rows, entity_table)
    inputs = input_drift(input_columns(served, data, validation, entity_table), served_inputs)
    unscored = skipped.height + int(np.isnan(run.scores).sum()) if len(run.scores) else skipped.height
    health = {
        "anchor": anchor,
        "rows": run.rows,
        "selected": selected.height,
        "score_psi": population_stability_index(validation_scores(served), run.scores),
        "input_psi": inputs,
        "unscored_share": unscored / selected.height if selected.height else 0.0,
        "model_age_days": (time.time() - served.refit_at) / DAY if served.refit_at else None,
        "model_version": run.model_version,
        "data_version": run.data_version,
        "newest_data_age_days": float(np.nanmin(data.data_age_days(np.array([anchor])))),
        "audit": run.audit,
    }
    data_plane.put_json(health, spec.graph_name, "predictions", query.name, "health", f"{day}.json")
    return DayResult(run, anchor, selected.height, skipped.height, health)


def embed_day(spec: GraphSpec, query: NamedQuery, day: str, data_plane: Any, graph_store: Any,
              feature_store: Any, threads: int | None = None) -> DayResult:  # fmt: skip
    """The embedding GNN's vectors for the entities ``query`` selects at ``day``'s anchor; publish them."""
    served = load_served_model(data_plane, spec.graph_name, query.name)
    if served.embedding_member is None:
        raise ServingError(f"{spec.graph_name}/{query.name}: the study trained no GNN, so there are no embeddings; "
                           "include `gnn` in the study's families and re-materialise hpo_study and best_model")  # fmt: skip
    data = open_scoring_data(spec, data_plane, graph_store, feature_store)
    anchor = anchor_of_day(day)
    selected, audit, entity_table = entities_at(query.text, data, anchor)
    rows, skipped = resolve_rows(selected, data, entity_table, skip_invalid=True,
                                 where=f"{spec.graph_name}/{query.name} at {day}")  # fmt: skip
    run = write_embeddings(served.embedding_member, data, rows,
                           lambda path: data_plane.put_file(path, spec.graph_name, "embeddings", query.name, f"{day}.parquet"),
                           entity_table, threads=threads)  # fmt: skip
    return DayResult(run, anchor, selected.height, skipped.height, {"entity_selection": audit})


AUDIT_ROWS = 32


def audit_served_features(
    served: ServedModel, data: ScoringData, rows: pl.DataFrame, entity_table: str
) -> dict | None:
    """The feature leakage audit on served rows of a GBDT: their features, rebuilt after every row later
    than the anchor is dropped and then scrambled, must not change (`audit_feature_leakage`; raises when they
    do). Up to `AUDIT_ROWS` rows of the first anchor: two more feature builds per partition. None: no GBDT."""
    gbdt = next((member for member in served.members if isinstance(member, GBDTMember)), None)
    if gbdt is None or rows.height == 0:
        return None
    first = rows.filter(pl.col("anchor_time") == rows["anchor_time"].min()).head(AUDIT_ROWS)
    entities = first.select(pl.col("_table_node").alias(NODE_ID), "anchor_time")
    return audit_feature_leakage(data.frames, data.schema, entity_table, entities, max_groups=1,
                                 vocabulary_limit=gbdt.vocabulary_limit)  # fmt: skip


def validation_scores(served: ServedModel) -> np.ndarray:
    """The served model's scores on validation rows, as drift checks compare them (empty when unknown)."""
    references = [member.reference for member in served.members]
    if any(reference is None for reference in references):
        return np.zeros(0)
    if len(references) == 1:
        return one_score(served.task_type, references[0])
    return one_score(served.task_type, blend_outputs(served.task_type, references, references))
