"""Prediction refresh schedules: one partitioned job per query and a daily schedule for its latest day,
evaluated and executed with real Dagster; the partitions every part of the platform shares."""

from __future__ import annotations

import datetime as dt

import pytest
from dagster import DailyPartitionsDefinition, Definitions, build_schedule_context, instance_for_test

from kumo_assets.pql.anchors import AnchorPlan
from kumo_assets.pql.queries import NamedQuery
from sensors.partitions import FALLBACK_START, prediction_partitions, prediction_start_date, query_partitions
from sensors.refresh import build_refresh_schedules, refresh_job_name, refresh_schedule_name
from tests.sensor_helpers import make_shop


def at(day: str, hour: int = 0) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(hour=hour, tzinfo=dt.UTC)


@pytest.fixture
def shop(tmp_path):
    return make_shop(tmp_path)


def test_schedule_requests_the_latest_complete_day_and_the_run_materialises_it(shop, tmp_path):
    schedule = shop.defs.resolve_schedule_def(refresh_schedule_name(shop.spec, "big_spender"))
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 0 * * *", "UTC")
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        context = build_schedule_context(instance=instance, scheduled_execution_time=at("2024-06-02"))
        [request] = schedule.evaluate_tick(context).run_requests
        assert request.partition_key == "2024-06-01" and request.job_name == "shop__big_spender__refresh"
        job = shop.defs.resolve_job_def(request.job_name)
        assert job.execute_in_process(instance=instance, partition_key=request.partition_key).success
    assert sorted(shop.calls) == [("shop/embeddings/big_spender", "2024-06-01"),
                                  ("shop/predictions/big_spender", "2024-06-01")]  # fmt: skip


def test_each_query_has_its_own_job_partitioned_like_its_assets(shop):
    for name, query in shop.queries.items():
        job = shop.defs.resolve_job_def(refresh_job_name(shop.spec, name))
        assert job.partitions_def == query_partitions(query)
        assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} == {
            f"shop/predictions/{name}", f"shop/embeddings/{name}"}  # fmt: skip
    assert query_partitions(shop.queries["big_spender"]).start.date() == dt.date(
        2024, 5, 1
    )  # its test anchor
    assert query_partitions(shop.queries["spend"]).start.date().isoformat() == FALLBACK_START  # no anchors


def test_no_run_before_the_first_day_is_over(shop, tmp_path):
    schedule = shop.defs.resolve_schedule_def(refresh_schedule_name(shop.spec, "big_spender"))
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        data = schedule.evaluate_tick(
            build_schedule_context(instance, scheduled_execution_time=at("2024-05-01"))
        )
    assert not data.run_requests


def test_schedule_time_is_configurable(shop):
    [schedule, _] = build_refresh_schedules(shop.spec, shop.queries, hour_of_day=3, minute_of_hour=15)
    assert schedule.name == "shop__big_spender__refresh_daily"
    defs = Definitions(assets=shop.defs.assets, schedules=[schedule], resources=shop.defs.resources)
    resolved = defs.resolve_schedule_def(schedule.name)
    assert resolved.cron_schedule == "15 3 * * *"


def test_partitions_are_equal_for_equal_starts_and_configurable(monkeypatch):
    query = NamedQuery("q", "PREDICT x", anchors=AnchorPlan())
    assert prediction_partitions("2024-03-01") == prediction_partitions("2024-03-01")
    assert prediction_partitions("2024-03-01") == DailyPartitionsDefinition("2024-03-01", timezone="UTC")
    assert prediction_start_date(query) == FALLBACK_START
    assert prediction_start_date(query, "2025-02-03") == "2025-02-03"
    monkeypatch.setenv("KUMO_PREDICTION_START", "2025-01-01")
    assert query_partitions(query).start.date() == dt.date(2025, 1, 1)
    with pytest.raises(ValueError):
        prediction_partitions("March 2024")
