"""Shared set-up of the new-data sensor and refresh schedule tests: the fake shop as the project defines it
(`kumo_assets.definitions.build_definitions`: every real asset, the ``new_data`` sensor, the refresh
schedules, the ``s3`` resource), and once per test process a materialised shop (tables, stores, training
tables, a one-trial tiny GNN study and the best_model of each query, one day of predictions and embeddings)
which tests copy (sources and data plane) before they change anything."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    Definitions,
    ExecuteInProcessResult,
    RunRequest,
    SensorDefinition,
    build_sensor_context,
    instance_for_test,
    materialize,
)

from kumo_assets.asset_keys import stage_of
from kumo_assets.definitions import build_definitions
from relational.pql.queries import NamedQuery, load_queries
from relational.spec import GraphSpec
from relational.spec_loader import load_spec
from sensors.new_data import build_new_data_sensor
from tests.support.fake_db import write_fake_db

# big_spender's partitions start on its test anchor, spend's (no anchors) on the fallback: two definitions.
QUERIES = """\
big_spender:
  query: PREDICT SUM(orders.amount, 0, 14, days) > 60 FOR EACH users.user_id
  anchors: {timestamps: {train: [2024-02-01, 2024-03-01], val: [2024-04-01], test: [2024-05-01]}}
spend: "PREDICT SUM(orders.amount, 0, 30) FOR EACH users.user_id WHERE COUNT(orders.*, -30, 0) > 0"
"""
TINY = {"mode": "fast", "n_trials": 1, "parallelism": 1, "families": ["gnn"], "device": "cpu",
        "space": {"max_steps_per_epoch": 3, "epochs": [1, 1], "channels": [8, 8]}}  # fmt: skip
DAY = "2024-06-01"  # the day of predictions and embeddings the materialised shop has scored


@dataclass
class Shop:
    """The fake shop under ``root``: its sources in ``shop/``, its data plane in ``plane/``, its Definitions."""

    root: Path
    defs: Definitions

    @classmethod
    def at(cls, root: Path) -> Shop:
        """The project's Definitions of the shop already written under ``root``."""
        return cls(root, build_definitions([root / "shop" / "graph.yaml"], str(root / "plane")))

    @classmethod
    def fresh(cls, root: Path, spec_text: str | None = None) -> Shop:
        """The fake database with QUERIES beside it and an empty data plane (nothing materialised)."""
        spec_path = write_fake_db(root / "shop", spec=spec_text)
        (spec_path.parent / "queries.yaml").write_text(QUERIES)
        return cls.at(root)

    @property
    def spec_path(self) -> Path:
        return self.root / "shop" / "graph.yaml"

    @cached_property
    def spec(self) -> GraphSpec:
        return load_spec(self.spec_path)

    @cached_property
    def queries(self) -> dict[str, NamedQuery]:
        return load_queries(self.spec_path.parent / "queries.yaml")

    def path(self, *parts: str) -> Path:
        """A file the shop's assets wrote, e.g. ``path("predictions", "spend", "2024-06-01.parquet")``."""
        return self.root / "plane" / "shop" / Path(*parts)

    def read_json(self, *parts: str) -> dict[str, Any]:
        return json.loads(self.path(*parts).read_text())

    def sensor(self, now: float | None = None) -> SensorDefinition:
        """The ``new_data`` sensor of the Definitions; at ``now`` (epoch seconds): the same sensor, built as
        `build_definitions` builds it, with a clock that says ``now``."""
        if now is None:
            return self.defs.resolve_sensor_def("new_data")
        return build_new_data_sensor([self.spec], {self.spec.graph_name: self.queries}, clock=lambda: now)

    def tick(self, instance, cursor: str | None, now: float | None = None) -> Any:
        """One real evaluation, resolved by Dagster as the daemon resolves it (SensorExecutionData)."""
        resources = {name: self.defs.resources[name] for name in ("data_plane", "s3")}
        with build_sensor_context(instance=instance, cursor=cursor, definitions=self.defs,
                                  resources=resources) as context:  # fmt: skip
            return self.sensor(now).evaluate_tick(context)

    def execute(self, instance, request: RunRequest) -> ExecuteInProcessResult:
        """Run a resolved sensor RunRequest in this process as the daemon would launch it (its job, assets,
        checks, partition and tags, the run key among them)."""
        job = self.defs.resolve_job_def(request.job_name)
        tags = {key: value for key, value in request.tags.items() if not key.startswith("dagster/partition")}
        return job.execute_in_process(
            instance=instance,
            asset_selection=list(request.asset_selection or []),
            partition_key=request.partition_key,
            tags={**tags, "dagster/run_key": request.run_key},
            raise_on_error=False,
        )


_MATERIALISED: list[Path] = []


def materialised_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of the shop with everything materialised for real, built once per test process (about 20 s):
    tables, stores, training tables, each query's tiny study and best_model (which writes pointer.json),
    then DAY's predictions (which write health/DAY.json) and embeddings of each query. Copy it to change it."""
    if not _MATERIALISED:
        root = tmp_path_factory.mktemp("materialised_shop")
        shop = Shop.fresh(root)
        # not the model assets (a default-config model per query, which nothing here reads)
        unpartitioned = [
            a for a in shop.defs.assets if stage_of(a.key) not in {"model", "predictions", "embeddings"}
        ]
        config = {"ops": {f"shop__{name}__study": {"config": TINY} for name in shop.queries}}
        (root / "dagster").mkdir()
        with instance_for_test(temp_dir=str(root / "dagster")) as instance:
            resources = shop.defs.resources
            assert materialize(
                unpartitioned, resources=resources, instance=instance, run_config=config
            ).success
            for name in shop.queries:
                serving = [a for a in shop.defs.assets if a.key.path[1:] in ([name, "predictions"], [name, "embeddings"])]  # fmt: skip
                assert materialize(serving, resources=resources, instance=instance, partition_key=DAY).success
        _MATERIALISED.append(root)
    return _MATERIALISED[0]


def copy_shop(materialised: Path, root: Path) -> Shop:
    """A copy of the materialised shop's sources and data plane under ``root``, with its own Definitions."""
    for part in ("shop", "plane"):
        shutil.copytree(materialised / part, root / part)
    return Shop.at(root)
