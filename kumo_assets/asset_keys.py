"""Every asset key of a graph's asset graph, in one place: tables, stores, tasks, models and serving.

Keys are ``[graph, table]`` for tables and ``[graph, <kind>]`` or ``[graph, <kind>, <query>]`` for the rest,
so the UI groups each graph's assets under its name.
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
    "table_asset_key",
    "training_table_key",
]


def table_asset_key(spec: GraphSpec, table: str) -> AssetKey:
    return AssetKey([spec.graph_name, table])


def graph_store_key(spec: GraphSpec) -> AssetKey:
    return AssetKey([spec.graph_name, "graph_store"])


def feature_store_key(spec: GraphSpec) -> AssetKey:
    return AssetKey([spec.graph_name, "feature_store"])


def _query_key(kind: str) -> Callable[[GraphSpec, str], AssetKey]:
    """The key function of a per-query asset: ``[graph, kind, query name]``."""

    def key(spec: GraphSpec, name: str) -> AssetKey:
        return AssetKey([spec.graph_name, kind, name])

    key.__name__ = key.__qualname__ = f"{kind}_key"
    key.__doc__ = f"The ``{kind}`` asset of query ``name``."
    return key


training_table_key = _query_key("training_table")
model_key = _query_key("model")
hpo_study_key = _query_key("hpo_study")
best_model_key = _query_key("best_model")
predictions_key = _query_key("predictions")
embeddings_key = _query_key("embeddings")
