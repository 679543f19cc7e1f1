"""The ``data_plane`` resource: builds the run's `stores.data_plane.DataPlane` from Dagster config.

The root and the S3 endpoint are plain configuration; credentials are never configuration (boto3 and polars
read them from the environment), so nothing secret is stored with a run.
"""

from __future__ import annotations

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field

from stores.data_plane import DataPlane
from stores.object_store import ObjectStoreConnector

__all__ = ["DataPlaneResource"]


class DataPlaneResource(ConfigurableResource):
    """Artifact root: a local directory (default ``.kumo/data``) or an ``s3://bucket/prefix``."""

    root: str = Field(description="A local folder or s3://bucket/prefix")
    endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (MinIO, moto); empty: AWS"
    )
    region: str | None = Field(default=None, description="S3 region; empty: the AWS environment's")

    def create_resource(self, context: InitResourceContext) -> DataPlane:
        store = ObjectStoreConnector(endpoint_url=self.endpoint_url, region=self.region)
        return DataPlane(root=self.root, object_store=store)
