"""Prediction refresh: per query, a job selecting its `predictions` and `embeddings` assets and a daily
schedule that materialises the latest partition of both: today's, anchored at 00:00 UTC, the moment it runs.

Written against asset keys only (``[graph, query, "predictions"]``, ``[graph, query, "embeddings"]``), so
the assets can live anywhere. The jobs take their partitions from the selected assets when `Definitions`
resolves them (Dagster 1.13 deprecates giving ``define_asset_job`` a ``partitions_def``), so they cannot
disagree with the assets; the assets build theirs with `kumo_assets.partitions.query_partitions`. Schedules
start stopped (turn them on in the UI), so a fresh instance does not begin scoring by itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    build_schedule_from_partitioned_job,
    define_asset_job,
)

from kumo_assets.asset_keys import embeddings_key, predictions_key
from relational.pql.queries import NamedQuery
from relational.spec import GraphSpec

if TYPE_CHECKING:  # not exported by dagster: both resolve to a job and a ScheduleDefinition in Definitions
    from dagster._core.definitions.partitions.partitioned_schedule import (
        UnresolvedPartitionedAssetScheduleDefinition,
    )
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

__all__ = [
    "build_refresh_jobs",
    "build_refresh_schedules",
    "refresh_job_name",
    "refresh_schedule_name",
]


def refresh_job_name(spec: GraphSpec, query_name: str) -> str:
    """Name of a query's refresh job (graph and query names are identifiers, so this is a valid job name)."""
    return f"{spec.graph_name}__{query_name}__refresh"


def refresh_schedule_name(spec: GraphSpec, query_name: str) -> str:
    """Name of a query's daily refresh schedule."""
    return f"{refresh_job_name(spec, query_name)}_daily"


def build_refresh_jobs(
    spec: GraphSpec, queries: Mapping[str, NamedQuery]
) -> list[UnresolvedAssetJobDefinition]:
    """One job per query selecting its predictions and embeddings (partitioned as those assets are)."""
    return [
        define_asset_job(
            refresh_job_name(spec, name),
            selection=AssetSelection.assets(predictions_key(spec, name), embeddings_key(spec, name)),
            description=f"Scores and embeddings of `{name}` for one day (anchor = the partition date).",
            tags={"kumo/refresh": f"{spec.graph_name}/{name}"},
        )
        for name in queries
    ]


def build_refresh_schedules(
    spec: GraphSpec,
    queries: Mapping[str, NamedQuery],
    hour_of_day: int = 0,
    minute_of_hour: int = 0,
    default_status: DefaultScheduleStatus = DefaultScheduleStatus.STOPPED,
) -> list[UnresolvedPartitionedAssetScheduleDefinition]:
    """A daily schedule per query (at ``hour_of_day:minute_of_hour`` UTC) materialising the latest partition.

    Each carries its job, so adding the schedules to `Definitions` adds the jobs too; there each resolves
    to a ``ScheduleDefinition`` (``defs.resolve_schedule_def(refresh_schedule_name(spec, query))``).
    """
    return [
        build_schedule_from_partitioned_job(
            job,
            name=refresh_schedule_name(spec, name),
            description=f"Materialise the latest day of `{name}`'s predictions and embeddings.",
            hour_of_day=hour_of_day,
            minute_of_hour=minute_of_hour,
            default_status=default_status,
        )
        for job, name in zip(build_refresh_jobs(spec, queries), queries, strict=True)
    ]
