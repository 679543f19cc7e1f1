"""The new-data sensor on real files, a real S3 endpoint (moto) and a real Dagster instance: what a changed
source makes stale, the retraining rules, and both stages of its runs really executing."""

from __future__ import annotations

import json
import os
import time

import pytest
from dagster import AssetKey, DagsterRunStatus, EnvVar, instance_for_test, materialize
from dagster._core.execution.api import create_execution_plan
from dagster._core.test_utils import create_run_for_test

from kumo_assets.ingest import build_ingest_assets
from kumo_assets.spec_loader import load_spec
from resources.connectors import ObjectStoreConnector
from resources.s3 import s3_resource_from_environment
from sensors.fingerprints import (
    content_changed,
    glob_regex,
    local_fingerprints,
    s3_fingerprints,
    table_fingerprints,
)
from sensors.new_data import (
    LAUNCH_GRACE_SECONDS,
    NewDataState,
    TickInputs,
    evaluate_new_data,
    stale_asset_keys,
    stale_tables,
)
from sensors.retraining import RetrainRules, RetrainVerdict
from tests.conftest import F1_SPEC
from tests.fake_db import SPEC, make_tables
from tests.sensor_helpers import Shop, execute, make_shop

DAY = 86400.0


def selection(request) -> set[str]:
    return {key.to_user_string() for key in request.asset_selection}


def ingest_selection(tables: list[str]) -> set[str]:
    """What a change makes stale in the shop: the tables, both stores, both training tables."""
    return {f"shop/{t}" for t in tables} | {"shop/graph_store", "shop/feature_store",
                                             "shop/training_table/big_spender", "shop/training_table/spend"}  # fmt: skip


def rewrite(shop: Shop, table: str, seed: int = 1) -> None:
    """New content for one table's source (another seed of the fake database)."""
    make_tables(seed=seed)[table].write_parquet(shop.spec_path.parent / f"{table}.parquet")


def write_pointer(shop: Shop, query: str, age_days: float | None) -> None:
    pointer = {"run_key": "x"} if age_days is None else {"refit_at": time.time() - age_days * DAY}
    shop.plane.put_json(pointer, "shop", "best_model", query, "pointer.json")


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        yield instance


def test_stale_tables_follow_foreign_keys_and_implied_tables(fake_spec):
    assert stale_tables(fake_spec, ["products"]) == ["products", "orders", "reviews"]
    assert stale_tables(fake_spec, ["orders"]) == ["stores", "orders", "reviews"]  # stores: implied by orders
    assert stale_tables(fake_spec, ["users"]) == ["users", "orders", "reviews"]  # users refers to itself
    assert stale_tables(fake_spec, ["reviews"]) == ["reviews"]
    f1 = load_spec(F1_SPEC)
    assert "results" in stale_tables(f1, ["drivers"]) and "drivers" not in stale_tables(f1, ["results"])


def test_fingerprints_hash_only_when_size_or_mtime_moved(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n")
    first = local_fingerprints([str(path)], {})
    assert first.hashed == [str(path)]
    assert local_fingerprints([str(path)], first.files).hashed == []
    os.utime(path, ns=(0, first.files[str(path)]["mtime_ns"] + 10**9))  # touched, same content
    touched = local_fingerprints([str(path)], first.files)
    assert touched.hashed == [str(path)] and not content_changed(first.files, touched.files)
    path.write_text("a,b\n1,3\n")
    assert content_changed(first.files, local_fingerprints([str(path)], touched.files).files)


def test_glob_patterns_match_keys_like_polars():
    assert glob_regex("shop/orders/*.parquet").match("shop/orders/part-0.parquet")
    assert not glob_regex("shop/orders/*.parquet").match("shop/orders/old/part-0.parquet")
    assert glob_regex("shop/**/*.parquet").match("shop/orders/old/part-0.parquet")
    assert glob_regex("shop/part-[0-9].csv").match("shop/part-7.csv")
    assert not glob_regex("shop/part-[!0-9].csv").match("shop/part-7.csv")


def test_retraining_thresholds_come_from_the_environment():
    assert RetrainRules.from_environment({}) == RetrainRules(30.0, 0.25)
    rules = RetrainRules.from_environment(
        {"KUMO_RETRAIN_MAX_MODEL_AGE_DAYS": "7", "KUMO_RETRAIN_MAX_SCORE_PSI": "inf"}
    )
    assert rules == RetrainRules(7.0, float("inf"))
    with pytest.raises(ValueError, match="KUMO_RETRAIN_MAX_SCORE_PSI='high'"):
        RetrainRules.from_environment({"KUMO_RETRAIN_MAX_SCORE_PSI": "high"})


def test_plain_tick_gives_up_on_a_run_that_never_appears(fake_spec):
    """The tick logic without Dagster: plain callables for the run store, the rules and the asset graph."""
    keys = stale_asset_keys(fake_spec, list(fake_spec.tables), [])
    inputs = TickInputs(
        specs=[fake_spec], queries_by_graph={}, assets=dict.fromkeys(keys),
        probe=lambda spec, table, previous: table_fingerprints(spec, table, previous, s3_client=dict),
        run_status=lambda run_key: None, verdict=lambda graph, query: RetrainVerdict(graph, query, False),
        now=1000.0,
    )  # fmt: skip
    first = evaluate_new_data(NewDataState(), inputs)
    make_tables(seed=1)["products"].write_parquet(fake_spec.path.parent / "products.parquet")
    stage_one = evaluate_new_data(first.state, inputs)
    assert [key.to_user_string() for key in stage_one.run_requests[0].asset_selection] == [
        "db/products", "db/orders", "db/reviews", "db/graph_store", "db/feature_store"]  # fmt: skip
    assert "not launched yet" in evaluate_new_data(stage_one.state, inputs).skip_reason
    inputs.now += LAUNCH_GRACE_SECONDS + 1
    later = evaluate_new_data(stage_one.state, inputs)
    assert (
        later.skip_reason.startswith("ingest run(s) new_data:")
        and "never appeared; gave up" in later.skip_reason
    )
    assert "no source changed" in later.skip_reason and later.state.pending is None


def test_first_tick_records_and_unchanged_or_touched_sources_request_nothing(tmp_path, instance):
    shop = make_shop(tmp_path)
    first = shop.tick(instance, None)
    assert not first.run_requests
    assert first.skip_message.startswith("first tick: recorded fingerprints, nothing requested")
    assert set(NewDataState.from_cursor(first.cursor).files) == {"shop/users", "shop/products", "shop/orders",
                                                                  "shop/reviews"}  # fmt: skip
    second = shop.tick(instance, first.cursor)
    assert (
        not second.run_requests
        and "no source changed; 4 files of 4 tables checked (0 hashed)" in second.skip_message
    )
    orders = shop.spec_path.parent / "orders.parquet"
    os.utime(orders, ns=(0, orders.stat().st_mtime_ns + 10**9))  # a touch: new mtime, same bytes
    touched = shop.tick(instance, second.cursor)
    assert not touched.run_requests and "(1 hashed)" in touched.skip_message
    assert "(0 hashed)" in shop.tick(instance, touched.cursor).skip_message  # the new mtime was recorded


@pytest.mark.parametrize(
    ("table", "stale"),
    [("products", ["products", "orders", "reviews"]), ("orders", ["stores", "orders", "reviews"]),
     ("reviews", ["reviews"])],
)  # fmt: skip
def test_changed_source_requests_exactly_the_table_and_its_downstream(tmp_path, instance, table, stale):
    shop = make_shop(tmp_path)
    cursor = shop.tick(instance, None).cursor
    rewrite(shop, table)
    result = shop.tick(instance, cursor)
    [request] = result.run_requests
    assert selection(request) == ingest_selection(stale)  # no model, study, best model, nor any partition
    assert request.partition_key is None and request.job_name == "__ASSET_JOB"
    checked = {check.asset_key.to_user_string() for check in request.asset_check_keys}
    assert checked == {f"shop/{t}" for t in stale}  # checks run with their tables (blocking ones stop it)
    assert request.tags["kumo/changed_tables"] == f"shop/{table}" and request.tags["kumo/retrain"] == "none"
    assert request.run_key.startswith("new_data:") and request.run_key.endswith(":ingest")
    assert "best_model shop/spend: no best model yet" in request.tags["kumo/reason"]  # so nothing to rescore
    pending = NewDataState.from_cursor(result.cursor).pending
    assert (
        pending["stage"] == "ingest" and pending["run_keys"] == [request.run_key] and pending["targets"] == []
    )
    waiting = shop.tick(instance, result.cursor)
    assert not waiting.run_requests and "waiting for ingest run(s)" in waiting.skip_message


def test_dagster_facts_the_two_stages_rest_on(tmp_path, instance):
    """Checked against Dagster itself: (1) unpartitioned assets and one partition of one query's assets run
    together, two queries' partitions (different starts) cannot; (2) steps are ordered only by direct
    dependencies among the selected assets: best_model (after hpo_study, not selected) would not wait for
    the training table it refits on."""
    shop = make_shop(tmp_path)
    job = shop.defs.resolve_implicit_global_asset_job_def()
    best = AssetKey(["shop", "best_model", "big_spender"])
    both = [AssetKey(["shop", "predictions", "big_spender"]), AssetKey(["shop", "predictions", "spend"])]
    with pytest.raises(Exception, match="PartitionsDefinition"):
        job.execute_in_process(instance=instance, asset_selection=both, partition_key="2024-06-01")
    one = [AssetKey(["shop", "predictions", "big_spender"]), AssetKey(["shop", "embeddings", "big_spender"])]
    assert shop.defs.get_repository_def().asset_graph.get(best).partitions_def is None
    assert job.execute_in_process(instance=instance, asset_selection=one, partition_key="2024-06-01").success
    assert sorted(shop.calls) == [("shop/embeddings/big_spender", "2024-06-01"),
                                  ("shop/predictions/big_spender", "2024-06-01")]  # fmt: skip

    table = AssetKey(["shop", "training_table", "big_spender"])
    plan = create_execution_plan(job.get_subset(asset_selection={table, best}))
    waits_for = {
        step.key: {key for i in step.step_inputs for key in i.dependency_keys} for step in plan.steps
    }
    assert waits_for == {"shop__training_table__big_spender": set(), "shop__best_model__big_spender": set()}


def test_both_stages_really_execute_and_nothing_races(tmp_path, instance):
    shop = make_shop(tmp_path)
    tables = build_ingest_assets(shop.spec)  # what ingesting a changed table reads besides its source
    assert materialize(tables, resources=shop.defs.resources, instance=instance).success
    for query in shop.queries:
        write_pointer(shop, query, age_days=2.0)
    cursor = shop.tick(instance, None).cursor
    rewrite(shop, "orders")
    stage_one = shop.tick(instance, cursor)
    [ingest] = stage_one.run_requests
    assert selection(ingest) == ingest_selection(["stores", "orders", "reviews"])
    waiting = shop.tick(instance, stage_one.cursor)
    assert not waiting.run_requests and "not launched yet" in waiting.skip_message
    assert execute(shop, instance, ingest)
    sensor_run = instance.get_runs()[0].run_id
    for key in ingest.asset_selection:  # the implied stores table too, rebuilt from the new orders
        assert instance.get_latest_materialization_event(key).run_id == sensor_run

    stage_two = shop.tick(instance, stage_one.cursor)
    partitions = {key: shop.defs.get_repository_def().asset_graph.get(key).partitions_def for key in
                  [AssetKey(["shop", "predictions", "big_spender"]), AssetKey(["shop", "predictions", "spend"])]}  # fmt: skip
    requests = {request.tags["kumo/query"]: request for request in stage_two.run_requests}
    assert set(requests) == {"shop/big_spender", "shop/spend"}
    for name, request in requests.items():
        query = name.split("/")[1]
        assert selection(request) == {f"shop/predictions/{query}", f"shop/embeddings/{query}"}  # no refit
        latest = partitions[AssetKey(["shop", "predictions", query])].get_last_partition_key()
        assert request.partition_key == latest and request.tags["dagster/partition"] == latest
        reason = f"after tables changed: shop/orders: {name} {latest}: predictions, embeddings"
        assert request.tags["kumo/reason"] == reason
        assert execute(shop, instance, request)
    assert len(shop.calls) == 4 and {partition for _, partition in shop.calls} == {
        r.partition_key for r in requests.values()
    }
    done = shop.tick(instance, stage_two.cursor)
    assert not done.run_requests
    assert done.skip_message.startswith("refresh finished (all succeeded); no source changed")


def test_failed_ingest_run_stops_before_rescoring(tmp_path, instance):
    shop = make_shop(tmp_path)
    write_pointer(shop, "big_spender", age_days=1.0)
    cursor = shop.tick(instance, None).cursor
    rewrite(shop, "reviews")
    [ingest] = (stage_one := shop.tick(instance, cursor)).run_requests
    create_run_for_test(instance, job_name="__ASSET_JOB", status=DagsterRunStatus.FAILURE,
                        tags={"dagster/run_key": ingest.run_key})  # fmt: skip
    after = shop.tick(instance, stage_one.cursor)
    assert not after.run_requests
    assert f"ingest run {ingest.run_key} FAILURE: nothing rescored" in after.skip_message
    assert NewDataState.from_cursor(after.cursor).pending is None


def test_rules_refit_best_model_and_say_why(tmp_path, instance, monkeypatch):
    shop = make_shop(tmp_path)
    write_pointer(shop, "big_spender", age_days=41.2)  # too old
    write_pointer(shop, "spend", age_days=1.0)
    for day, psi in [("2024-06-01", 0.05), ("2024-06-02", 0.4), ("2024-05-30", 0.01)]:  # newest drifted
        health = {"score_psi": psi, "unscored_share": 0.0, "model_age_days": 1.0}
        shop.plane.put_json(health, "shop", "predictions", "spend", "health", f"{day}.json")
    cursor = shop.tick(instance, None).cursor
    rewrite(shop, "users")
    stage_one = shop.tick(instance, cursor)
    [ingest] = stage_one.run_requests
    assert selection(ingest) == ingest_selection(["users", "orders", "reviews"])  # best models only after
    assert "best_model shop/big_spender: model age 41.2 days > 30" in ingest.tags["kumo/retrain"]
    assert "best_model shop/spend: score PSI 0.400 > 0.25 on 2024-06-02" in ingest.tags["kumo/retrain"]
    create_run_for_test(instance, job_name="__ASSET_JOB", status=DagsterRunStatus.SUCCESS,
                        tags={"dagster/run_key": ingest.run_key})  # fmt: skip
    stage_two = shop.tick(instance, stage_one.cursor)
    requests = {request.tags["kumo/query"]: request for request in stage_two.run_requests}
    assert selection(requests["shop/big_spender"]) == {"shop/best_model/big_spender",
        "shop/predictions/big_spender", "shop/embeddings/big_spender"}  # fmt: skip
    why = requests["shop/big_spender"].tags["kumo/retrain"]
    assert why == "best_model shop/big_spender: model age 41.2 days > 30"
    assert "shop/best_model/spend" in selection(requests["shop/spend"])
    assert "hpo_study" not in json.dumps([sorted(selection(r)) for r in requests.values()])

    monkeypatch.setenv("KUMO_RETRAIN_MAX_MODEL_AGE_DAYS", "50")
    monkeypatch.setenv("KUMO_RETRAIN_MAX_SCORE_PSI", "0.5")
    idle = NewDataState(NewDataState.from_cursor(stage_one.cursor).files).to_cursor()
    rewrite(shop, "users", seed=2)
    [calm] = shop.tick(instance, idle).run_requests
    assert calm.tags["kumo/retrain"] == "none"
    assert "best_model shop/big_spender kept: model age 41.2 days <= 50" in calm.tags["kumo/reason"]
    held = "best_model shop/spend kept: model age 1.0 days <= 50; score PSI 0.400 <= 0.5 on 2024-06-02"
    assert held in calm.tags["kumo/reason"]


def test_changed_s3_object_is_noticed(tmp_path, instance, s3_endpoint, s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    client = ObjectStoreConnector(endpoint_url=s3_endpoint, region="us-east-1").client()
    spec_text = SPEC.replace("source: products.{ext}", f"source: s3://{s3_bucket}/shop/products/*.{{ext}}")
    shop = make_shop(tmp_path, spec_text=spec_text, s3=s3_resource_from_environment())
    local = shop.spec_path.parent / "products.parquet"
    client.put_object(Bucket=s3_bucket, Key="shop/products/part-0.parquet", Body=local.read_bytes())
    client.put_object(Bucket=s3_bucket, Key="shop/products/old/part-9.parquet", Body=b"not matched")
    first = shop.tick(instance, None)
    files = NewDataState.from_cursor(first.cursor).files["shop/products"]
    assert (
        list(files) == [f"s3://{s3_bucket}/shop/products/part-0.parquet"] and files[next(iter(files))]["etag"]
    )
    assert not shop.tick(instance, first.cursor).run_requests
    make_tables(seed=3)["products"].write_parquet(local)
    client.put_object(Bucket=s3_bucket, Key="shop/products/part-0.parquet", Body=local.read_bytes())
    [request] = shop.tick(instance, first.cursor).run_requests
    assert selection(request) == ingest_selection(["products", "orders", "reviews"])
    assert request.tags["kumo/changed_tables"] == "shop/products"
    prefix = f"s3://{s3_bucket}/shop/products/"
    assert set(s3_fingerprints(client, prefix)) == {prefix + "part-0.parquet", prefix + "old/part-9.parquet"}


def test_missing_source_is_reported_and_keeps_its_old_fingerprint(tmp_path, instance):
    shop = make_shop(tmp_path)
    cursor = shop.tick(instance, None).cursor
    (shop.spec_path.parent / "reviews.parquet").unlink()
    result = shop.tick(instance, cursor)
    assert not result.run_requests and "unreadable, kept as before: shop/reviews:" in result.skip_message
    assert (
        NewDataState.from_cursor(result.cursor).files["shop/reviews"]
        == NewDataState.from_cursor(cursor).files["shop/reviews"]
    )


def test_s3_resource_reads_only_the_variables_that_are_set(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    unset = s3_resource_from_environment()
    assert unset.endpoint_url is None and unset.region_name is None
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    resource = s3_resource_from_environment()  # EnvVars: the UI shows the names, the sensor gets the values
    assert (resource.endpoint_url, resource.region_name) == (
        EnvVar("AWS_ENDPOINT_URL"),
        EnvVar("AWS_DEFAULT_REGION"),
    )
