"""Every asset key of a graph's asset graph, in one place: tables, stores, tasks, models and serving.

Keys are ``[graph, table]`` for tables and ``[graph, <kind>]`` or ``[graph, <kind>, <query>]`` for the rest,
so the UI groups each graph's assets under its name.
"""

from __future__ import annotations

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


def training_table_key(spec: GraphSpec, name: str) -> AssetKey:
    return AssetKey([spec.graph_name, "training_table", name])


def model_key(spec: GraphSpec, name: str) -> AssetKey:
    return AssetKey([spec.graph_name, "model", name])


def hpo_study_key(spec: GraphSpec, name: str) -> AssetKey:
    return AssetKey([spec.graph_name, "hpo_study", name])


def best_model_key(spec: GraphSpec, name: str) -> AssetKey:
    return AssetKey([spec.graph_name, "best_model", name])


def predictions_key(spec: GraphSpec, name: str) -> AssetKey:
    return AssetKey([spec.graph_name, "predictions", name])


def embeddings_key(spec: GraphSpec, name: str) -> AssetKey:
    return AssetKey([spec.graph_name, "embeddings", name])
