"""A trial that runs where the driver's files are not (a Kubernetes pod): everything through the data plane.

The data plane is a bucket on a real S3 endpoint (moto_server). The graph and feature store assets publish
their versions there; the trial gets its spec and queries as text and its store versions pinned, fetches
those versions into an empty node cache, trains, and checkpoints to the bucket. The driver's spec folder and
local stores are moved away before the trial starts, so any read of them would fail the test.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest
from dagster import instance_for_test, materialize

from kumo_assets.definitions import plain_resources
from relational.pql.queries import load_queries
from relational.spec_loader import load_spec
from stores.data_plane import DataPlane
from stores.store_sync import FILE_LIST, StoreSyncError, fetch_version, publish_version
from tests.integration.test_model_assets import shop_definitions
from tests.support.hpo_helpers import TINY, study_inputs
from training.hpo import StudySettings
from training.hpo_trial import TrialRequest, run_study_trial
from training.studies import StudyStorage
from training.study_setup import open_query_study

pytestmark = pytest.mark.integration


def s3_shop(tmp_path: Path, bucket: str):
    """The shop database ingested into an S3 data plane, its stores built under a driver-local folder."""
    defs = shop_definitions(
        tmp_path, data_plane=f"s3://{bucket}/plane", graph_store_root=str(tmp_path / "driver")
    )
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        assert materialize(study_inputs(defs), resources=defs.resources, instance=instance).success
    return defs, tmp_path / "shop" / "graph.yaml"


def test_a_trial_runs_from_the_data_plane_alone(tmp_path, s3_endpoint, s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    defs, spec_path = s3_shop(tmp_path, s3_bucket)
    resources = plain_resources(defs)
    plane, graph_store, feature_store = (
        resources[name] for name in ("data_plane", "graph_store", "feature_store")
    )
    for store in (graph_store, feature_store):  # each asset published its version and the CURRENT pointer
        version = (store.directory("shop") / "CURRENT").read_text()
        kind = store.directory("shop").name
        assert plane.exists("shop", kind, version, FILE_LIST)
        assert plane.get_bytes("shop", kind, "CURRENT").decode() == version

    spec, query = load_spec(spec_path), load_queries(spec_path.parent / "queries.yaml")["big_spender"]
    settings = StudySettings(mode="fast", n_trials=1, seed=0, families=("gnn",), pruner="none")
    storage = StudyStorage(url=str(tmp_path / "optuna" / "journal.log"))
    study = open_query_study(spec, query, settings, TINY, plane, graph_store, feature_store, storage)
    trial = study.study.ask()
    params = {**study.space.suggest(trial), **study.base_params, "device": "cpu"}
    request = TrialRequest.for_study(study, trial_id=trial._trial_id, trial_number=trial.number, params=params,
                                     data_plane_root=plane.root, graph_store_root=str(tmp_path / "pod" / "stores"),
                                     text_encoder="hashing")  # fmt: skip
    request.batch_cache_dir = str(tmp_path / "pod" / "batches")

    shutil.move(tmp_path / "shop", tmp_path / "moved-shop")  # the pod has neither the spec nor the stores
    shutil.move(tmp_path / "driver", tmp_path / "moved-driver")
    result = run_study_trial(TrialRequest.from_extras(request.to_extras()), log=lambda _: None)

    assert result["state"] == "complete" and 0.0 <= result["value"] <= 1.0
    for kind, version in (("graph_store", study.graph_version), ("feature_store", study.feature_version)):
        fetched = tmp_path / "pod" / "stores" / "shop" / kind / version
        assert fetched.is_dir() and any(fetched.iterdir())
    assert result["uri"].startswith(f"s3://{s3_bucket}/plane/shop/models/big_spender/")
    client = plane.object_store.client()
    prefix = result["uri"].removeprefix(f"s3://{s3_bucket}/").rsplit("/", 1)[0] + "/"  # the run's folder
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=s3_bucket, Prefix=prefix)["Contents"]]
    assert any("/checkpoints/" in key for key in keys)


def _fake_version(root: Path, graph: str, kind: str, version: str) -> Path:
    folder = root / graph / kind / version
    (folder / "edges").mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"version": version}))
    (folder / "edges" / "indptr.npy").write_bytes(bytes(range(256)) * 64)
    return folder


def test_concurrent_fetches_publish_one_complete_version(tmp_path, s3_endpoint, s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    plane = DataPlane(root=f"s3://{s3_bucket}/plane")
    built = _fake_version(tmp_path / "builder", "g", "graph_store", "v1")
    uri = publish_version(plane, built, "g")
    assert uri == f"s3://{s3_bucket}/plane/g/graph_store/v1"
    cache = tmp_path / "node" / "g" / "graph_store"
    results, errors = [], []

    def fetch():
        try:
            results.append(fetch_version(plane, cache, "g"))  # CURRENT on the data plane
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and set(results) == {cache / "v1"}
    assert sorted(p.name for p in cache.iterdir()) == ["v1"]  # no staging folder left behind
    for name in ("manifest.json", "edges/indptr.npy"):
        assert (cache / "v1" / name).read_bytes() == (built / name).read_bytes()

    with pytest.raises(StoreSyncError, match="re-materialise the g/graph_store asset"):
        fetch_version(plane, cache, "g", "v2")
    with pytest.raises(StoreSyncError, match="materialise the g/feature_store asset"):
        fetch_version(plane, tmp_path / "node" / "g" / "feature_store", "g")


def test_a_truncated_upload_is_refused(tmp_path, s3_endpoint, s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    plane = DataPlane(root=f"s3://{s3_bucket}/plane")
    publish_version(plane, _fake_version(tmp_path / "builder", "g", "graph_store", "v1"), "g")
    plane.put_bytes(b"short", "g", "graph_store", "v1", "edges", "indptr.npy")
    cache = tmp_path / "node" / "g" / "graph_store"
    with pytest.raises(StoreSyncError, match="its file list says 16384"):
        fetch_version(plane, cache, "g", "v1")
    assert not cache.exists() or not any(cache.iterdir())  # nothing half-fetched stays


def test_a_local_data_plane_holding_the_stores_is_not_copied(tmp_path):
    plane = DataPlane(root=str(tmp_path / "plane"))
    built = _fake_version(tmp_path / "plane", "g", "graph_store", "v1")
    assert publish_version(plane, built, "g") == str(built.resolve())
    assert not (built / FILE_LIST).exists()
    elsewhere = DataPlane(root=str(tmp_path / "other"))
    publish_version(elsewhere, built, "g")
    fetched = fetch_version(elsewhere, tmp_path / "node" / "g" / "graph_store", "g", "v1")
    assert (fetched / "edges" / "indptr.npy").read_bytes() == (built / "edges" / "indptr.npy").read_bytes()
