"""Other real schemas from ../shared/data (when present): composite keys, implied entities, known dirt.

The expected counts are the ones each database's SOURCE.md reports, checked independently of this code.
"""

from __future__ import annotations

import pytest
from dagster import AssetKey, instance_for_test, materialize

from kumo_assets.ingest import build_ingest_assets
from relational.spec_loader import load_spec
from tests.conftest import REPO_ROOT, SHARED_DATA

pytestmark = pytest.mark.integration
SPECS = REPO_ROOT / "tests" / "support" / "specs"


def materialise(name: str, tmp_path, monkeypatch, data_plane):
    if not (SHARED_DATA / name).is_dir():
        pytest.skip(f"{SHARED_DATA / name} is not on this machine")
    monkeypatch.setenv("KUMO_SHARED_DATA", str(SHARED_DATA))
    spec = load_spec(SPECS / f"{name}.yaml")
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = materialize(
            build_ingest_assets(spec), resources={"data_plane": data_plane}, instance=instance
        )
        assert result.success
        checks = {
            (evaluation.asset_key.path[-1], evaluation.check_name): evaluation
            for evaluation in result.get_asset_check_evaluations()
        }
        rows = {
            table: instance.get_latest_materialization_event(AssetKey([name, table]))
            .asset_materialization.metadata["dagster/row_count"]
            .value
            for table in spec.tables
        }
    return checks, rows


def dangling(checks, table, key):
    return checks[(table, f"foreign_key_{key}")].metadata["dangling_rows"].value


def test_nycflights13(tmp_path, monkeypatch, data_plane):
    checks, rows = materialise("nycflights13", tmp_path, monkeypatch, data_plane)
    assert rows == {"airlines": 16, "airports": 1458, "planes": 3322, "weather": 26115, "flights": 336776}
    assert dangling(checks, "flights", "dest") == 7602
    assert dangling(checks, "flights", "tailnum") == 50094
    assert dangling(checks, "flights", "weather_hour") == 1556  # composite (origin, time_hour)
    assert dangling(checks, "flights", "carrier") == 0 and dangling(checks, "flights", "origin") == 0
    assert checks[("weather", "primary_key")].passed  # composite primary key
    assert not checks[("weather", "column_types")].passed  # `year` is always 2013: no signal
    flights = data_plane.get_frame("nycflights13", "tables", "flights.parquet", columns=["_kumo_time"])
    assert flights["_kumo_time"].min() == 1357034400  # 2013-01-01 10:00 UTC (SOURCE.md)


def test_completejourney(tmp_path, monkeypatch, data_plane):
    checks, rows = materialise("completejourney", tmp_path, monkeypatch, data_plane)
    assert rows["household"] == 2469 and rows["store"] == 457 and rows["basket"] == 155848
    assert rows["transactions"] == 1469307 and rows["coupons"] == 116204
    assert dangling(checks, "transactions", "product_id") == 4836
    assert dangling(checks, "coupons", "product_id") == 16
    assert dangling(checks, "transactions", "household_id") == 0  # implied from the same keys
    assert dangling(checks, "demographics", "household_id") == 0
    campaigns = data_plane.get_json("completejourney", "tables", "campaigns.json")
    assert campaigns["time"]["how"] == "inherited from campaign_descriptions via campaign_id"
