"""Connection settings for object stores (S3 and S3-compatible endpoints such as MinIO or moto).

Credentials are never configuration: boto3 and polars read them from the environment (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE or an instance role), so they are never logged.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["ObjectStoreConnector"]


class ObjectStoreConnector(BaseModel):
    """Where s3:// URIs are served from; empty fields fall back to the standard AWS environment."""

    model_config = ConfigDict(frozen=True)

    endpoint_url: str | None = None
    region: str | None = None

    def storage_options(self) -> dict[str, str]:
        """Options for polars' cloud readers and writers (no credentials: polars reads the environment)."""
        options: dict[str, str] = {}
        if self.endpoint_url:
            options["aws_endpoint_url"] = self.endpoint_url
            if self.endpoint_url.startswith("http://"):
                options["aws_allow_http"] = "true"
        if self.region:
            options["aws_region"] = self.region
        return options

    def client(self) -> Any:
        """A boto3 S3 client with the same endpoint and region, reused within a process (creating one costs
        tens of milliseconds, more than a small object's GET) until the AWS environment changes."""
        fingerprint = tuple(os.environ.get(name) for name in _AWS_ENVIRONMENT)
        return _client(self.endpoint_url or None, self.region or None, os.getpid(), fingerprint)


_AWS_ENVIRONMENT = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                    "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION")  # fmt: skip


@functools.lru_cache(maxsize=8)
def _client(endpoint_url: str | None, region: str | None, pid: int, environment: tuple) -> Any:
    """boto3 clients are thread-safe but not fork-safe: one per process (``pid``) and settings."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region)
