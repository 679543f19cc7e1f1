"""The ``graph_store`` resource: the local folder of every graph's memory-mapped stores (`stores.graph_store`)."""

from __future__ import annotations

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field

from stores.graph_store import GraphStores

__all__ = ["GraphStoreResource"]


class GraphStoreResource(ConfigurableResource):
    """Graph-store versions under a local root (mmap needs a local file system, even when the data plane is
    on S3)."""

    root: str = Field(description="Local folder holding <graph>/graph_store/")

    def create_resource(self, context: InitResourceContext) -> GraphStores:
        return GraphStores(root=self.root)
