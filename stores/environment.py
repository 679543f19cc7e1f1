"""Where artifacts live, read from the environment once, for the Definitions and the `kumo` CLI alike.

``KUMO_DATA_PLANE`` (default ``.kumo/data`` in the project), ``KUMO_GRAPH_STORE`` (default: the data plane
when local, else ``.kumo/graph_store``), ``AWS_ENDPOINT_URL`` and ``AWS_REGION`` for s3:// paths.
"""

from __future__ import annotations

import os
from pathlib import Path

from stores.object_store import ObjectStoreConnector

__all__ = ["PROJECT_ROOT", "data_plane_root", "graph_store_root", "object_store_from_environment"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def data_plane_root() -> str:
    return os.environ.get("KUMO_DATA_PLANE") or str(PROJECT_ROOT / ".kumo" / "data")


def graph_store_root(data_plane: str, configured: str | None = None) -> str:
    """The local folder for memory-mapped stores: as configured, else the data plane when it is local."""
    configured = configured or os.environ.get("KUMO_GRAPH_STORE") or None
    if configured:
        return configured
    return str(PROJECT_ROOT / ".kumo" / "graph_store") if "://" in data_plane else data_plane


def object_store_from_environment() -> ObjectStoreConnector:
    return ObjectStoreConnector(
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
    )
