"""The ``s3`` resource: dagster-aws's `S3Resource`, which the new-data sensor lists s3:// sources through.

Endpoint and region come from ``AWS_ENDPOINT_URL`` and ``AWS_REGION`` (or ``AWS_DEFAULT_REGION``) as
`EnvVar`s, so the UI shows the variable's name, never its value; a variable that is unset is left out (real
AWS needs no endpoint). Credentials are never configuration: boto3 reads the standard ``AWS_*`` variables,
a profile or an instance role.
"""

from __future__ import annotations

import os

from dagster import EnvVar
from dagster_aws.s3 import S3Resource

__all__ = ["s3_resource_from_environment"]


def s3_resource_from_environment() -> S3Resource:
    """An `S3Resource` reading endpoint and region from the environment (each only when it is set)."""
    region = next((name for name in ("AWS_REGION", "AWS_DEFAULT_REGION") if os.environ.get(name)), None)
    return S3Resource(
        endpoint_url=EnvVar("AWS_ENDPOINT_URL") if os.environ.get("AWS_ENDPOINT_URL") else None,
        region_name=EnvVar(region) if region else None,
    )
