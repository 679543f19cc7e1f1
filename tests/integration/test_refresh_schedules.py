"""Prediction refresh schedules of the project's Definitions: one partitioned job per query and a daily
schedule for its latest day, evaluated with real Dagster and executed on the shop's real assets (a copy of
the materialised shop); the partitions every part of the platform shares."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from dagster import (
    AssetKey,
    DailyPartitionsDefinition,
    Definitions,
    build_schedule_context,
    instance_for_test,
)

from kumo_assets.partitions import (
    FALLBACK_START,
    prediction_partitions,
    prediction_start_date,
    query_partitions,
)
from relational.pql.anchors import AnchorPlan
from relational.pql.queries import NamedQuery
from sensors.refresh import build_refresh_schedules, refresh_job_name, refresh_schedule_name
from tests.support.sensor_helpers import DAY, Shop, copy_shop, materialised_shop


def at(day: str, hour: int = 0) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(hour=hour, tzinfo=dt.UTC)


@pytest.fixture
def shop(tmp_path):
    """The project's Definitions of the fake shop, nothing materialised."""
    return Shop.fresh(tmp_path)


@pytest.fixture(scope="module")
def materialised(tmp_path_factory):
    """The materialised shop (shared with the sensor tests in this process); tests copy it."""
    return materialised_shop(tmp_path_factory)


def test_schedule_requests_the_day_it_runs_on_and_the_run_materialises_it(materialised, tmp_path):
    shop = copy_shop(materialised, tmp_path)  # its study and best_model, DAY scored: the next day is new
    schedule = shop.defs.resolve_schedule_def(refresh_schedule_name(shop.spec, "big_spender"))
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 0 * * *", "UTC")
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        context = build_schedule_context(instance=instance, scheduled_execution_time=at("2024-06-03"))
        [request] = schedule.evaluate_tick(context).run_requests
        assert (
            request.partition_key == "2024-06-03" != DAY and request.job_name == "shop__big_spender__refresh"
        )
        job = shop.defs.resolve_job_def(request.job_name)
        assert job.execute_in_process(instance=instance, partition_key=request.partition_key).success
        keys = [AssetKey(["shop", query, kind]) for kind in ("predictions", "embeddings")
                for query in shop.queries]  # fmt: skip
        events = {key.to_user_string(): instance.get_latest_materialization_event(key) for key in keys}
    assert {key: event and event.asset_materialization.partition for key, event in events.items()} == {
        "shop/big_spender/predictions": "2024-06-03", "shop/big_spender/embeddings": "2024-06-03",
        "shop/spend/predictions": None, "shop/spend/embeddings": None}  # fmt: skip
    scored = pl.read_parquet(shop.path("predictions", "big_spender", "2024-06-03.parquet"))
    assert scored["anchor_time"].unique().to_list() == [at("2024-06-03")]  # the partition's day is the anchor
    assert shop.path("embeddings", "big_spender", "2024-06-03.parquet").exists()


def test_each_query_has_its_own_job_partitioned_like_its_assets(shop):
    for name, query in shop.queries.items():
        job = shop.defs.resolve_job_def(refresh_job_name(shop.spec, name))
        assert job.partitions_def == query_partitions(query)
        assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} == {
            f"shop/{name}/predictions", f"shop/{name}/embeddings"}  # fmt: skip
    assert query_partitions(shop.queries["big_spender"]).start.date() == dt.date(
        2024, 5, 1
    )  # its test anchor
    assert query_partitions(shop.queries["spend"]).start.date().isoformat() == FALLBACK_START  # no anchors


def test_no_run_before_the_first_day_and_the_first_run_scores_it(shop, tmp_path):
    schedule = shop.defs.resolve_schedule_def(refresh_schedule_name(shop.spec, "big_spender"))
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        before, first = (schedule.evaluate_tick(build_schedule_context(instance, scheduled_execution_time=at(day)))
                         for day in ("2024-04-30", "2024-05-01"))  # fmt: skip
    assert not before.run_requests
    assert [request.partition_key for request in first.run_requests] == ["2024-05-01"]


def test_schedule_time_is_configurable(shop):
    [schedule, _] = build_refresh_schedules(shop.spec, shop.queries, hour_of_day=3, minute_of_hour=15)
    assert schedule.name == "shop__big_spender__refresh_daily"
    defs = Definitions(assets=shop.defs.assets, schedules=[schedule], resources=shop.defs.resources)
    resolved = defs.resolve_schedule_def(schedule.name)
    assert resolved.cron_schedule == "15 3 * * *"


def test_partitions_are_equal_for_equal_starts_and_configurable(monkeypatch):
    query = NamedQuery("q", "PREDICT x", anchors=AnchorPlan())
    assert prediction_partitions("2024-03-01") == prediction_partitions("2024-03-01")
    assert prediction_partitions("2024-03-01") == DailyPartitionsDefinition(
        "2024-03-01", timezone="UTC", end_offset=1
    )
    assert prediction_start_date(query) == FALLBACK_START
    assert prediction_start_date(query, "2025-02-03") == "2025-02-03"
    monkeypatch.setenv("KUMO_PREDICTION_START", "2025-01-01")
    assert query_partitions(query).start.date() == dt.date(2025, 1, 1)
    with pytest.raises(ValueError):
        prediction_partitions("March 2024")
