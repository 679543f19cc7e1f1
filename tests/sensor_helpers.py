"""Shared set-up of the new-data sensor and refresh schedule tests: the fake shop's real assets (tables,
stores, training tables, models, studies, best models) plus stand-in daily-partitioned `predictions` and
`embeddings` keyed and partitioned as the platform's, which score in no time (the real ones need a model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagster import AssetsDefinition, Definitions, RunRequest, asset, build_sensor_context
from dagster_aws.s3 import S3Resource

from kumo_assets.best_model import best_model_key, build_best_model_assets
from kumo_assets.features import build_feature_store_asset
from kumo_assets.graph import build_graph_store_asset
from kumo_assets.hpo_assets import build_hpo_assets
from kumo_assets.ingest import build_ingest_assets
from kumo_assets.pql.queries import NamedQuery, load_queries
from kumo_assets.predictions import embeddings_key, predictions_key
from kumo_assets.spec import GraphSpec
from kumo_assets.spec_loader import load_spec
from kumo_assets.tasks import build_training_table_assets
from kumo_assets.training import build_model_assets
from resources.data_plane import DataPlane
from resources.feature_store import FeatureStoreResource
from resources.graph_store import GraphStoreResource
from resources.launchers import LocalTrialLauncher
from resources.provisioner import NodeProvisioner
from resources.studies import StudyStorage
from sensors.new_data import build_new_data_sensor
from sensors.partitions import query_partitions
from sensors.refresh import build_refresh_schedules
from tests.fake_db import write_fake_db

# big_spender's partitions start on its test anchor, spend's (no anchors) on the fallback: two definitions.
QUERIES = """\
big_spender:
  query: PREDICT SUM(orders.amount, 0, 14, days) > 60 FOR EACH users.user_id
  anchors: {timestamps: {train: [2024-02-01, 2024-03-01], val: [2024-04-01], test: [2024-05-01]}}
spend: "PREDICT SUM(orders.amount, 0, 30) FOR EACH users.user_id WHERE COUNT(orders.*, -30, 0) > 0"
"""


def stand_in_prediction_assets(
    spec: GraphSpec, queries: dict[str, NamedQuery], calls: list
) -> list[AssetsDefinition]:
    """Partitioned predictions and embeddings per query, after best_model, recording what they ran."""
    assets = []
    for query in queries.values():
        for key in (predictions_key(spec, query.name), embeddings_key(spec, query.name)):

            @asset(key=key, partitions_def=query_partitions(query), deps=[best_model_key(spec, query.name)])
            def _stand_in(context) -> None:
                calls.append((context.asset_key.to_user_string(), context.partition_key))

            assets.append(_stand_in)
    return assets


@dataclass
class Shop:
    """The fake shop wired like the platform will wire it: assets, sensor, schedules and resources."""

    spec_path: Path
    spec: GraphSpec
    queries: dict[str, NamedQuery]
    plane: DataPlane
    s3: S3Resource
    defs: Definitions
    calls: list = field(default_factory=list)

    @property
    def sensor(self):
        return self.defs.resolve_sensor_def("new_data")

    def tick(self, instance, cursor: str | None) -> Any:
        """One real evaluation, resolved by Dagster as the daemon resolves it (SensorExecutionData)."""
        resources = {"data_plane": self.plane, "s3": self.s3}
        with build_sensor_context(instance=instance, cursor=cursor, definitions=self.defs,
                                  resources=resources) as context:  # fmt: skip
            return self.sensor.evaluate_tick(context)


def shop_assets(spec: GraphSpec, queries: dict[str, NamedQuery], calls: list) -> list[AssetsDefinition]:
    """Every asset the platform defines for a graph, with stand-in predictions and embeddings."""
    return [
        *build_ingest_assets(spec),
        build_graph_store_asset(spec),
        build_feature_store_asset(spec),
        *build_training_table_assets(spec, queries),
        *build_model_assets(spec, queries),
        *build_hpo_assets(spec, queries),
        *build_best_model_assets(spec, queries),
        *stand_in_prediction_assets(spec, queries, calls),
    ]


def make_shop(root: Path, spec_text: str | None = None, s3: S3Resource | None = None) -> Shop:
    """Write the fake database with QUERIES beside it and define everything over a local data plane."""
    spec_path = write_fake_db(root / "shop", spec=spec_text)
    (spec_path.parent / "queries.yaml").write_text(QUERIES)
    plane = DataPlane(root=str(root / "plane"))
    spec, queries = load_spec(spec_path), load_queries(spec_path.parent / "queries.yaml")
    calls: list = []
    s3 = s3 or S3Resource()
    defs = Definitions(
        assets=shop_assets(spec, queries, calls),
        sensors=[build_new_data_sensor([spec], {spec.graph_name: queries})],
        schedules=build_refresh_schedules(spec, queries),
        resources={
            "data_plane": plane,
            "graph_store": GraphStoreResource(root=plane.root),
            "feature_store": FeatureStoreResource(root=plane.root, text_encoder="hashing"),
            "study_storage": StudyStorage(url=""),
            "trial_launcher": LocalTrialLauncher(),
            "provisioner": NodeProvisioner(catalogue=""),
            "s3": s3,
        },
    )
    return Shop(spec_path, spec, queries, plane, s3, defs, calls)


def execute(shop: Shop, instance, request: RunRequest) -> bool:
    """Run a resolved sensor RunRequest in this process as the daemon would launch it (its job, assets,
    checks, partition and tags, the run key among them); True when the run succeeded."""
    job = shop.defs.resolve_job_def(request.job_name)
    tags = {key: value for key, value in request.tags.items() if not key.startswith("dagster/partition")}
    result = job.execute_in_process(
        instance=instance,
        asset_selection=list(request.asset_selection or []),
        partition_key=request.partition_key,
        tags={**tags, "dagster/run_key": request.run_key},
        raise_on_error=False,
    )
    return result.success
