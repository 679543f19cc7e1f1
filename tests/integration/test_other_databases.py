"""Other real schemas from ../shared/data (when present): composite keys, implied entities, known dirt.

The specs are the bring-your-own-database examples in kumo_assets/examples/<name>/. The expected table counts
are the ones each database's SOURCE.md reports, checked independently of this code.
"""

from __future__ import annotations

import polars as pl
import pytest
from dagster import AssetKey, instance_for_test, materialize

from kumo_assets.ingest import build_ingest_assets
from kumo_assets.tasks import build_training_table_assets
from relational.pql.queries import load_queries
from relational.spec_loader import load_spec
from tests.conftest import REPO_ROOT, SHARED_DATA

pytestmark = pytest.mark.integration
EXAMPLES = REPO_ROOT / "kumo_assets" / "examples"


def materialise(name: str, tmp_path, monkeypatch, data_plane, queries: bool = False):
    """Ingest the example's tables (and, with ``queries``, build the training tables of its queries.yaml)."""
    if not (SHARED_DATA / name).is_dir():
        pytest.fail(
            f"{SHARED_DATA / name} is missing: these tests read the shared data beside the repository"
        )
    monkeypatch.setenv("KUMO_SHARED_DATA", str(SHARED_DATA))
    spec = load_spec(EXAMPLES / name / "graph.yaml")
    assets = build_ingest_assets(spec)
    if queries:
        assets += build_training_table_assets(spec, load_queries(EXAMPLES / name / "queries.yaml"))
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = materialize(assets, resources={"data_plane": data_plane}, instance=instance)
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


def test_nycflights13_late_departure(tmp_path, monkeypatch, data_plane):
    """The plane question of the examples' queries.yaml: enough planes in test, both classes in every split.

    The counts were recomputed with plain polars from the Parquet files (planes active in the week before a
    Tuesday 05:00 UTC anchor; 1 when one of their next week's departures has dep_delay > 60) and matched
    this table row for row.
    """
    materialise("nycflights13", tmp_path, monkeypatch, data_plane, queries=True)
    table = data_plane.get_frame("nycflights13", "training_tables", "late_departure.parquet")
    per_split = table.group_by("split").agg(
        pl.len().alias("rows"),
        pl.col("entity").n_unique().alias("planes"),
        pl.col("label").sum().alias("late"),
    )
    counts = {row.pop("split"): row for row in per_split.to_dicts()}
    assert all(0 < row["late"] < row["rows"] for row in counts.values())  # both classes in every split
    assert counts == {
        "train": {"rows": 76581, "planes": 3255, "late": 12421},
        "val": {"rows": 7199, "planes": 2586, "late": 702},
        "test": {"rows": 7054, "planes": 2569, "late": 1299},
    }
    assert counts["test"]["planes"] >= 1000  # what the quality benchmark needs
    meta = data_plane.get_json("nycflights13", "training_tables", "late_departure.json")
    assert meta["task_type"] == "binary_classification" and meta["leakage_audit"]["passed"]
    assert {split: anchors["count"] for split, anchors in meta["anchors"].items()} == {
        "train": 43, "val": 4, "test": 4}  # fmt: skip
    assert meta["anchors"]["test"]["last"] + 7 * 86400 <= 1388548800  # the last flight, 2014-01-01 04:00 UTC
    delay = data_plane.get_json("nycflights13", "training_tables", "arrival_delay.json")
    assert delay["task_type"] == "regression" and delay["leakage_audit"]["passed"]
    # AVG drops the planes with no arrival next week: fewer rows than late_departure.
    assert delay["rows"] == {"train": 56376, "val": 5384, "test": 5179}


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
