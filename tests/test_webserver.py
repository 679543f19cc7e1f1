"""The Dagster UI: a real webserver on the workspace shows the ingest assets, their checks and metadata."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from dagster import instance_for_test, materialize

from kumo_assets.definitions import build_definitions
from tests.conftest import F1_SPEC, REPO_ROOT, free_port

pytestmark = pytest.mark.integration

QUERY = """
{
  assetNodes(group: {groupName: "f1_ingest", repositoryName: "__repository__", repositoryLocationName: "kumo"}) {
    assetKey { path }
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } }
  }
  assetOrError(assetKey: {path: ["f1", "results"]}) {
    ... on Asset { assetMaterializations(limit: 1) { metadataEntries { label } } }
  }
}
"""


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_ui_lists_assets_checks_and_metadata(tmp_path):
    plane = tmp_path / "plane"
    defs = build_definitions([F1_SPEC], str(plane))
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert materialize(list(defs.assets), resources=defs.resources, instance=instance).success
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "KUMO_DATA_PLANE": str(plane)}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1",
         "-p", str(port)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                answer = graphql(port, QUERY)
                if answer.get("data", {}).get("assetNodes"):
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dagster-webserver did not answer")
            time.sleep(0.5)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
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
