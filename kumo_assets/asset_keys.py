"""Every asset key of a graph's asset graph, in one place: tables, stores, tasks, models and serving.

Keys read as the pipeline: ``[graph, table]`` for tables, ``[graph, graph_store|feature_store]`` for the
stores and ``[graph, query, <stage>]`` for a query's stages (``training_table``, ``study``, ``best_model``,
``predictions``...), so the lineage labels each node by what it is and groups it under its query
(`asset_group`).
"""

from __future__ import annotations

from collections.abc import Callable

from dagster import AssetKey

from relational.spec import GraphSpec

__all__ = [
    "best_model_key",
    "embeddings_key",
    "feature_store_key",
    "graph_store_key",
    "hpo_study_key",
    "model_key",
    "predictions_key",
    "query_group",
    "stage_of",
    "stores_group",
    "table_asset_key",
    "tables_group",
    "training_table_key",
]


def tables_group(spec: GraphSpec) -> str:
    """The UI group of a graph's source tables."""
    return f"{spec.graph_name}_tables"


def stores_group(spec: GraphSpec) -> str:
    """The UI group of a graph's graph store and feature store."""
    return f"{spec.graph_name}_stores"


def query_group(spec: GraphSpec, query: str) -> str:
    """The UI group of one query's stages: training table, models, study, best model, predictions."""
    return f"{spec.graph_name}_{query}"


def table_asset_key(spec: GraphSpec, table: str) -> AssetKey:
    return AssetKey([spec.graph_name, table])


def graph_store_key(spec: GraphSpec) -> AssetKey:
    return AssetKey([spec.graph_name, "graph_store"])


def feature_store_key(spec: GraphSpec) -> AssetKey:
    return AssetKey([spec.graph_name, "feature_store"])


def _query_key(kind: str) -> Callable[[GraphSpec, str], AssetKey]:
    """The key function of a per-query asset: ``[graph, query name, kind]``."""

    def key(spec: GraphSpec, name: str) -> AssetKey:
        return AssetKey([spec.graph_name, name, kind])

    key.__name__ = key.__qualname__ = f"{kind}_key"
    key.__doc__ = f"The ``{kind}`` asset of query ``name``."
    return key


training_table_key = _query_key("training_table")
model_key = _query_key("model")
hpo_study_key = _query_key("study")
best_model_key = _query_key("best_model")
predictions_key = _query_key("predictions")
embeddings_key = _query_key("embeddings")


STORES = ("graph_store", "feature_store")


def stage_of(key: AssetKey) -> str:
    """What an asset of this project is: ``table``, a store's name, or a query stage (``study``, ...)."""
    if len(key.path) == 3:
        return key.path[2]
    return key.path[1] if key.path[1] in STORES else "table"
