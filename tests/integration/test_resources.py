"""Resources hold configuration only and hand assets the plain objects of the core, with EnvVars resolved
when a run starts (so a password in a URL is never literal config)."""

from __future__ import annotations

from dagster import EnvVar

from cluster.provisioner import NodeProvisioner
from kumo_assets.definitions import build_definitions, plain_resources
from stores.data_plane import DataPlane
from stores.feature_store import FeatureStores
from stores.graph_store import GraphStores
from tests.support.fake_db import write_fake_db
from training.studies import StudyStorage


def test_the_definitions_hand_out_plain_objects_built_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("KUMO_OPTUNA_STORAGE", "postgresql://kumo:s3cret@db:5432/optuna")
    monkeypatch.setenv("KUMO_TEXT_ENCODER", "hashing")
    defs = build_definitions(
        [write_fake_db(tmp_path / "shop")], str(tmp_path / "plane"), str(tmp_path / "stores")
    )
    assert isinstance(defs.resources["data_plane"].endpoint_url, EnvVar)
    assert "s3cret" not in repr(defs.resources["study_storage"])
    built = plain_resources(defs)
    assert type(built["data_plane"]) is DataPlane and built["data_plane"].root == str(tmp_path / "plane")
    assert built["data_plane"].object_store.endpoint_url == "http://127.0.0.1:9"
    assert type(built["graph_store"]) is GraphStores and built["graph_store"].root == str(tmp_path / "stores")
    assert type(built["feature_store"]) is FeatureStores and built["feature_store"].text_encoder == "hashing"
    assert type(built["study_storage"]) is StudyStorage and built["study_storage"].url.endswith("/optuna")
    assert type(built["provisioner"]) is NodeProvisioner
