"""Ingest through Dagster: the asset factory, checks, metadata, write-audit-publish, the CLI and F1."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, DagsterEventType, instance_for_test, materialize

from kumo_assets.definitions import build_definitions
from kumo_assets.ingest import build_ingest_assets
from relational.spec_loader import load_spec
from stores.tables import ingest_table, publish_table
from tests.conftest import F1_SPEC, REPO_ROOT
from tests.support.fake_db import make_tables, write_fake_db
from tests.support.servers import venv_tool


def check_evaluations(result, asset_key: AssetKey) -> dict[str, bool]:
    return {
        evaluation.check_name: evaluation.passed
        for evaluation in result.get_asset_check_evaluations()
        if evaluation.asset_key == asset_key
    }


def test_pure_ingest_and_publish_without_dagster(fake_spec, data_plane):
    for table in ["users", "products", "stores", "orders", "reviews"]:
        meta = publish_table(fake_spec, ingest_table(fake_spec, table, data_plane), data_plane)
        assert Path(meta["uri"]).is_file()
    written = data_plane.get_json(fake_spec.graph_name, "tables", "reviews.json")
    orders_meta = data_plane.get_json(fake_spec.graph_name, "tables", "orders.json")
    assert written["parents"] == {"orders": orders_meta["content_hash"]}


def test_fake_db_materialises_with_checks_and_metadata(fake_spec, data_plane, tmp_path):
    assets = build_ingest_assets(fake_spec)
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = materialize(assets, resources={"data_plane": data_plane}, instance=instance)
        assert result.success
        orders_key = AssetKey([fake_spec.graph_name, "orders"])
        checks = check_evaluations(result, orders_key)
        assert checks == {
            "primary_key": True,
            "event_time": True,
            "foreign_key_user_id": False,  # one dangling key, a warning
            "foreign_key_product_id": True,
            "foreign_key_store_id": True,
            "column_types": True,
        }
        materialization = instance.get_latest_materialization_event(orders_key).asset_materialization
        metadata = materialization.metadata
        assert metadata["dagster/row_count"].value == make_tables()["orders"].height - 1
        stypes = {record.data["column"]: record.data["stype"] for record in metadata["stypes"].value.records}
        assert stypes["created_at"] == "timestamp"
        keys = {record.data["key"]: record.data for record in metadata["foreign_keys"].value.records}
        assert (keys["user_id"]["points at"], keys["user_id"]["null rows"], keys["user_id"]["dangling rows"]) == (
            "users", 1, 1)  # fmt: skip
        assert len(metadata["preview"].value.records) == 5
        assert metadata["time_range"].value.startswith("2024-01-01")
        assert (
            len(metadata["dagster/column_schema"].value.columns)
            == data_plane.get_frame(fake_spec.graph_name, "tables", "orders.parquet").width
        )


def test_a_table_from_outside_the_spec_folder_shows_no_names_or_values(tmp_path, data_plane, monkeypatch):
    """A source outside graph.yaml's folder and $KUMO_SHARED_DATA (a CSV's header is the file's own text)
    ingests, but its page quotes none of its names or values, as its messages do not; it says why."""
    monkeypatch.delenv("KUMO_SHARED_DATA", raising=False)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret.csv").write_text(
        "TOPSECRET_user,TOPSECRET_hash,when\nalice,hunter2,2024-01-01\nbob,swordfish,2024-01-02\n"
    )
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "graph.yaml").write_text(
        "name: leaky\ntables:\n  leak: {source: ../elsewhere/secret.csv, time_column: when}\n"
    )
    spec = load_spec(tmp_path / "spec" / "graph.yaml")
    (tmp_path / "instance").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "instance")) as instance:
        assert materialize(
            build_ingest_assets(spec), resources={"data_plane": data_plane}, instance=instance
        ).success
        event = instance.get_latest_materialization_event(AssetKey(["leaky", "leak"])).asset_materialization
    shown = repr(event.metadata)
    assert not any(word in shown for word in ("TOPSECRET", "alice", "hunter2", "swordfish", "2024-01-0"))
    assert event.metadata["dagster/row_count"].value == 2
    assert "lies outside the folder of graph.yaml" in event.metadata["columns_and_values"].value


def test_blocking_check_stops_downstream_and_keeps_the_old_version(tmp_path, data_plane):
    spec_path = write_fake_db(tmp_path / "db")
    spec = load_spec(spec_path)
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert materialize(
            build_ingest_assets(spec), resources={"data_plane": data_plane}, instance=instance
        ).success
        users_path = Path(data_plane.uri(spec.graph_name, "tables", "users.parquet"))
        good_bytes = users_path.read_bytes()
        orders_runs = len(
            instance.fetch_materializations(AssetKey([spec.graph_name, "orders"]), limit=10).records
        )

        tables = make_tables()
        tables["users"] = pl.concat([tables["users"], tables["users"].tail(1)])
        write_fake_db(tmp_path / "db", tables=tables)
        result = materialize(
            build_ingest_assets(load_spec(spec_path)),
            resources={"data_plane": data_plane},
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        failure = next(
            event for event in result.all_events if event.event_type == DagsterEventType.STEP_FAILURE
        )
        assert "primary key ['user_id'] must be unique" in failure.event_specific_data.error.to_string()
        assert check_evaluations(result, AssetKey([spec.graph_name, "users"]))["primary_key"] is False
        assert users_path.read_bytes() == good_bytes  # nothing half-written, old version intact
        orders_after = instance.fetch_materializations(
            AssetKey([spec.graph_name, "orders"]), limit=10
        ).records
        assert len(orders_after) == orders_runs  # downstream did not run


def test_definitions_load_from_environment(tmp_path, fake_spec_path):
    defs = build_definitions([F1_SPEC, fake_spec_path], str(tmp_path / "plane"))
    keys = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"f1/results", "db/orders", "db/stores"} <= keys
    with pytest.raises(ValueError, match="graph names must be unique"):
        build_definitions([F1_SPEC, F1_SPEC], str(tmp_path / "plane"))


def _dagster_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
        "KUMO_DATA_PLANE": str(tmp_path / "plane"),
    }
    (tmp_path / "dagster_home").mkdir(exist_ok=True)
    return subprocess.run(
        [venv_tool("dagster"), *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_definitions_validate_cli(tmp_path):
    completed = _dagster_cli(tmp_path, "definitions", "validate", "-w", "workspace.yaml")
    assert completed.returncode == 0, completed.stdout + completed.stderr
