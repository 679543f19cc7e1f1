"""The Dagster UI: a real webserver on the workspace shows the ingest assets, their checks and metadata."""

from __future__ import annotations

import os
import signal

import pytest
from dagster import instance_for_test, materialize

from kumo_assets.definitions import build_definitions
from tests.conftest import F1_SPEC, REPO_ROOT
from tests.support.servers import free_port, graphql, running_server, venv_tool

pytestmark = pytest.mark.integration

QUERY = """
{
  assetNodes(group: {groupName: "f1_tables", repositoryName: "__repository__", repositoryLocationName: "kumo"}) {
    assetKey { path }
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } }
  }
  assetOrError(assetKey: {path: ["f1", "results"]}) {
    ... on Asset { assetMaterializations(limit: 1) { metadataEntries { label } } }
  }
}
"""


def test_ui_lists_assets_checks_and_metadata(tmp_path):
    plane = tmp_path / "plane"
    defs = build_definitions([F1_SPEC], str(plane))
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        tables = [a for a in defs.assets if len(a.key.path) == 2]  # the UI checks below read the tables only
        assert materialize(tables, resources=defs.resources, instance=instance).success
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "KUMO_DATA_PLANE": str(plane)}
    answers = []

    def answered() -> bool:
        try:
            answers.append(graphql(port, QUERY, timeout=30))
        except OSError:
            return False
        return bool(answers[-1].get("data", {}).get("assetNodes"))

    command = [venv_tool("dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)]
    with running_server(command, answered, timeout=90, stop_signal=signal.SIGINT, cwd=REPO_ROOT, env=env):
        answer = answers[-1]
    nodes = {"/".join(node["assetKey"]["path"]): node for node in answer["data"]["assetNodes"]}
    assert len(nodes) == 9
    checks = {
        check["name"]: check["blocking"] for check in nodes["f1/results"]["assetChecksOrError"]["checks"]
    }
    assert checks["primary_key"] is True and checks["event_time"] is True
    assert checks["foreign_key_raceId"] is False
    labels = {
        entry["label"]
        for entry in answer["data"]["assetOrError"]["assetMaterializations"][0]["metadataEntries"]
    }
    assert {"dagster/row_count", "stypes", "preview", "foreign_keys", "time_range"} <= labels
