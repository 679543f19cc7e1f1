"""The one `Definitions` of the project: every asset, check and resource, wired from the environment.

Environment (all optional):
- ``KUMO_GRAPH_SPEC``: graph.yaml path(s), separated by ``:``; default: the embedded F1 example. A
  ``queries.yaml`` beside a graph.yaml adds one training-table asset per query.
- ``KUMO_DATA_PLANE``: artifact root, a folder or ``s3://bucket/prefix``; default ``.kumo/data``.
- ``KUMO_GRAPH_STORE``: local folder for the memory-mapped graph and feature stores; default: the data
  plane when local.
- ``AWS_ENDPOINT_URL`` / ``AWS_REGION``: S3-compatible endpoint and region for s3:// sources.
- ``KUMO_OPTUNA_STORAGE``: Optuna storage URL; default a journal file under the (local) data plane. Use
  ``postgresql://...`` on a cluster.
- ``KUMO_TRIAL_LAUNCHER``: ``local`` (default: trials as subprocesses on this CPU, forked from a warm server
  that imported torch once per run; ``KUMO_WARM_TRIALS=0`` starts each cold) or ``kubernetes`` (one pod
  per trial; ``KUMO_TRIAL_IMAGE``, ``KUMO_TRIAL_NAMESPACE``, ``KUMO_TRIAL_SERVICE_ACCOUNT``, and
  ``KUMO_TRIAL_SECRETS``: comma-separated Secrets whose keys become the trials' environment, e.g. PGPASSWORD;
  ``KUMO_NODE_CACHE_HOST_PATH``: a node folder the trials of a node share for fetched stores and batches).
- ``KUMO_CAPACITY_BACKEND``: what the capacity sensor does with its plan: ``dry-run`` (default: record it)
  or ``kubernetes`` (headroom placeholder Deployments in ``KUMO_TRIAL_NAMESPACE``).
- ``KUMO_MAX_CONCURRENT_STEPS`` / ``KUMO_CPU_STEPS``: steps a run executes at once (default max(8, cores)) /
  CPU-heavy ones among them (default the cores); see kumo_assets/execution.py.
- ``KUMO_INSTANCE_CATALOGUE``: instance-type catalogue YAML for the provisioner; default deploy/instances.yaml.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dagster import Definitions, EnvVar, build_resources

from kumo_assets.best_model import build_best_model_assets
from kumo_assets.execution import run_executor
from kumo_assets.hpo_assets import build_hpo_assets, build_hpo_checks
from kumo_assets.ingest import build_ingest_assets
from kumo_assets.predictions import build_prediction_assets
from kumo_assets.stores import build_feature_store_asset, build_graph_store_asset
from kumo_assets.tasks import build_training_table_assets
from kumo_assets.training import build_model_assets
from relational.pql.queries import load_queries, queries_beside
from relational.spec_loader import load_spec
from resources.capacity_backends import CapacityBackend, DryRunCapacity, KubernetesHeadroom
from resources.data_plane import DataPlaneResource
from resources.feature_store import FeatureStoreResource
from resources.graph_store import GraphStoreResource
from resources.k8s_launcher import KubernetesTrialLauncher
from resources.launchers import LocalTrialLauncher, TrialLauncher
from resources.provisioner import NodeProvisionerResource
from resources.s3 import s3_resource_from_environment
from resources.studies import StudyStorageResource
from sensors.capacity import capacity_sensor
from sensors.new_data import build_new_data_sensor
from sensors.refresh import build_refresh_schedules
from stores.environment import data_plane_root
from stores.environment import graph_store_root as local_store_root

__all__ = ["DEFAULT_SPEC", "build_definitions", "defs", "plain_resources"]

DEFAULT_SPEC = Path(__file__).resolve().parent / "examples" / "f1" / "graph.yaml"


def build_definitions(
    spec_paths: list[str | Path],
    data_plane_root: str,
    graph_store_root: str | None = None,
    text_encoder: str | None = None,
) -> Definitions:
    """Assets for every graph spec, sharing one data plane.

    Args:
        graph_store_root: local folder for graph stores (memory-mapped); default: the data plane when it
            is local, else ``.kumo/graph_store`` in the project.
        text_encoder: how text columns are embedded (``auto``, ``hashing``, a sentence model); default
            ``KUMO_TEXT_ENCODER``, else ``auto``.
    """
    graph_store_root = local_store_root(data_plane_root, graph_store_root)
    specs = [load_spec(path) for path in spec_paths]
    names = [spec.graph_name for spec in specs]
    if len(set(names)) != len(names):
        raise ValueError(
            f"graph names must be unique across specs, got {names}: set `name:` in each graph.yaml"
        )
    assets, checks, schedules, queries_by_graph = [], [], [], {}
    for spec in specs:
        assets += build_ingest_assets(spec)
        assets.append(build_graph_store_asset(spec))
        assets.append(build_feature_store_asset(spec))
        queries_file = queries_beside(spec.path)
        if queries_file is not None:
            queries = load_queries(queries_file)
            queries_by_graph[spec.graph_name] = queries
            schedules += build_refresh_schedules(spec, queries)
            assets += build_training_table_assets(spec, queries)
            assets += build_model_assets(spec, queries)
            assets += build_hpo_assets(spec, queries)
            checks += build_hpo_checks(spec, queries)
            assets += build_best_model_assets(spec, queries)
            assets += build_prediction_assets(spec, queries)
    return Definitions(
        assets=assets,
        asset_checks=checks,
        executor=run_executor(),
        resources={
            "data_plane": DataPlaneResource(
                root=data_plane_root,
                endpoint_url=_env_or_none("AWS_ENDPOINT_URL"),
                region=_env_or_none("AWS_REGION") or _env_or_none("AWS_DEFAULT_REGION"),
            ),
            "graph_store": GraphStoreResource(root=graph_store_root),
            "feature_store": FeatureStoreResource(
                root=graph_store_root,
                text_encoder=text_encoder or os.environ.get("KUMO_TEXT_ENCODER") or "auto",
            ),
            # an EnvVar, resolved when a run starts: a Postgres URL's password never becomes literal config
            "study_storage": StudyStorageResource(
                url=EnvVar("KUMO_OPTUNA_STORAGE") if os.environ.get("KUMO_OPTUNA_STORAGE") else ""
            ),
            "trial_launcher": trial_launcher_from_environment(),
            "provisioner": NodeProvisionerResource(catalogue=_env_or_none("KUMO_INSTANCE_CATALOGUE") or ""),
            "capacity_backend": capacity_backend_from_environment(),
            "s3": s3_resource_from_environment(),
        },
        sensors=[capacity_sensor, build_new_data_sensor(specs, queries_by_graph)],
        schedules=schedules,
    )


def trial_launcher_from_environment() -> TrialLauncher:
    """Local subprocesses by default; one Kubernetes pod per trial when ``KUMO_TRIAL_LAUNCHER=kubernetes``."""
    kind = os.environ.get("KUMO_TRIAL_LAUNCHER", "local")
    if kind == "local":
        return LocalTrialLauncher(warm_start=os.environ.get("KUMO_WARM_TRIALS", "1") != "0")
    if kind == "kubernetes":
        image = os.environ.get("KUMO_TRIAL_IMAGE")
        if not image:
            raise ValueError("KUMO_TRIAL_LAUNCHER=kubernetes needs KUMO_TRIAL_IMAGE (the trial image, see "
                             "docs/kubernetes.md)")  # fmt: skip
        secrets = [name for name in os.environ.get("KUMO_TRIAL_SECRETS", "").split(",") if name]
        return KubernetesTrialLauncher(
            image=image,
            namespace=os.environ.get("KUMO_TRIAL_NAMESPACE", "default"),
            service_account_name=os.environ.get("KUMO_TRIAL_SERVICE_ACCOUNT") or None,
            env_from_secrets=secrets,
            node_cache_host_path=os.environ.get("KUMO_NODE_CACHE_HOST_PATH") or None,
        )
    raise ValueError(f"KUMO_TRIAL_LAUNCHER={kind!r}: choose local or kubernetes")


def capacity_backend_from_environment() -> CapacityBackend:
    """Dry run by default; ``KUMO_CAPACITY_BACKEND=kubernetes`` keeps headroom placeholders in
    ``KUMO_TRIAL_NAMESPACE``."""
    kind = os.environ.get("KUMO_CAPACITY_BACKEND", "dry-run")
    if kind == "dry-run":
        return DryRunCapacity()
    if kind == "kubernetes":
        return KubernetesHeadroom(namespace=os.environ.get("KUMO_TRIAL_NAMESPACE", "default"))
    raise ValueError(f"KUMO_CAPACITY_BACKEND={kind!r}: choose dry-run or kubernetes")


def plain_resources(definitions: Definitions, names: tuple[str, ...] = ("data_plane", "graph_store", "feature_store",
                    "study_storage", "provisioner")) -> dict[str, Any]:  # fmt: skip
    """The plain objects these resources hand to assets (a `DataPlane`, `GraphStores`, ...), with every
    ``EnvVar`` resolved: for scripts, benchmarks and tests that call the plain core with the same settings."""
    with build_resources({name: definitions.resources[name] for name in names}) as built:
        return {name: getattr(built, name) for name in names}


def _env_or_none(name: str) -> EnvVar | None:
    """``EnvVar(name)`` where it is set (resolved when a run starts, never stored as literal config), else None."""
    return EnvVar(name) if os.environ.get(name) else None


def spec_paths_from_environment() -> list[str | Path]:
    configured = os.environ.get("KUMO_GRAPH_SPEC", "")
    return [path for path in configured.split(os.pathsep) if path] or [DEFAULT_SPEC]


defs = build_definitions(spec_paths_from_environment(), data_plane_root())
