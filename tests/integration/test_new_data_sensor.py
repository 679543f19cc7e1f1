"""The new-data sensor of the project's Definitions on real files, a real S3 endpoint (moto), a real Dagster
instance and the shop's real assets: what a changed source makes stale, the retraining rules on the
pointer.json best_model wrote and the health file predictions wrote, and both stages of its runs executing."""

from __future__ import annotations

import os
import time

import polars as pl
import pytest
from dagster import AssetKey, EnvVar, instance_for_test
from dagster._core.execution.api import create_execution_plan

from relational.fingerprints import (
    content_changed,
    glob_regex,
    local_fingerprints,
    s3_fingerprints,
    table_fingerprints,
)
from relational.spec_loader import load_spec
from resources.s3 import s3_resource_from_environment
from sensors.new_data import (
    LAUNCH_GRACE_SECONDS,
    NewDataState,
    TickInputs,
    evaluate_new_data,
    stale_asset_keys,
    stale_tables,
)
from serving.retraining import RetrainRules, RetrainVerdict
from stores.object_store import ObjectStoreConnector
from tests.conftest import F1_SPEC
from tests.support.fake_db import SPEC, make_tables
from tests.support.sensor_helpers import DAY, Shop, copy_shop, materialised_shop

SECONDS_PER_DAY = 86400.0


def selection(request) -> set[str]:
    return {key.to_user_string() for key in request.asset_selection}


def ingest_selection(tables: list[str]) -> set[str]:
    """What a change makes stale in the shop: the tables, both stores, both training tables."""
    return {f"shop/{t}" for t in tables} | {"shop/graph_store", "shop/feature_store",
                                             "shop/big_spender/training_table", "shop/spend/training_table"}  # fmt: skip


def rewrite(shop: Shop, table: str, seed: int = 1) -> None:
    """New content for one table's source (another seed of the fake database)."""
    make_tables(seed=seed)[table].write_parquet(shop.spec_path.parent / f"{table}.parquet")


def health(shop: Shop, query: str, day: str) -> dict:
    """The health record the predictions asset wrote for ``day``."""
    return shop.read_json("predictions", query, "health", f"{day}.json")


def latest_day(shop: Shop, query: str) -> str:
    """The latest complete day of a query's predictions (what stage two rescores)."""
    key = AssetKey(["shop", query, "predictions"])
    return shop.defs.resolve_asset_graph().get(key).partitions_def.get_last_partition_key()


@pytest.fixture
def instance(tmp_path):
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        yield instance


@pytest.fixture(scope="module")
def materialised(tmp_path_factory):
    return materialised_shop(tmp_path_factory)


@pytest.fixture
def shop(materialised, tmp_path):
    """This test's own copy of the materialised shop: its sources and its data plane."""
    return copy_shop(materialised, tmp_path)


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
    shop = Shop.fresh(tmp_path)
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
    shop = Shop.fresh(tmp_path)  # before any best model: nothing to rescore after stage one
    cursor = shop.tick(instance, None).cursor
    rewrite(shop, table)
    result = shop.tick(instance, cursor)
    [request] = result.run_requests
    assert selection(request) == ingest_selection(stale)  # no model, study, best model, nor any partition
    assert request.partition_key is None and request.job_name == "__ASSET_JOB"
    checked = {check.asset_key.to_user_string() for check in request.asset_check_keys}
    # checks run with their assets (blocking ones stop the run): the stale tables' and the training tables'
    assert checked == {f"shop/{t}" for t in stale} | {
        "shop/big_spender/training_table",
        "shop/spend/training_table",
    }
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
    """Checked against Dagster itself: (1) two queries' partitions (different starts) cannot share a run
    (one query's partition with unpartitioned assets can: stage two's refit run in
    test_rules_refit_best_model_and_say_why); (2) steps are ordered only by direct dependencies among the
    selected assets: best_model (after hpo_study, not selected) would not wait for the training table it
    refits on."""
    shop = Shop.fresh(tmp_path)
    job = shop.defs.resolve_implicit_global_asset_job_def()
    both = [AssetKey(["shop", "big_spender", "predictions"]), AssetKey(["shop", "spend", "predictions"])]
    with pytest.raises(Exception, match="PartitionsDefinition"):
        job.execute_in_process(instance=instance, asset_selection=both, partition_key="2024-06-01")
    assert not instance.get_runs()  # refused before any run started

    best = AssetKey(["shop", "big_spender", "best_model"])
    table = AssetKey(["shop", "big_spender", "training_table"])
    assert shop.defs.resolve_asset_graph().get(best).partitions_def is None
    # An internal: Dagster has no public API that shows which steps of a run wait for which (a real run would
    # show the order only by the chance of timing), and this fact is what rules out a one-run refresh.
    plan = create_execution_plan(job.get_subset(asset_selection={table, best}))
    waits_for = {
        step.key: {key for i in step.step_inputs for key in i.dependency_keys} for step in plan.steps
    }
    assert waits_for == {"shop__big_spender__training_table": set(), "shop__big_spender__best_model": set()}


def test_both_stages_really_execute_and_nothing_races(shop, instance, monkeypatch):
    # the one-trial tiny models' scores drift (PSI well above the default 0.25): here no rule fires
    monkeypatch.setenv("KUMO_RETRAIN_MAX_SCORE_PSI", "inf")
    pointers = {query: shop.read_json("best_model", query, "pointer.json") for query in shop.queries}
    published = shop.read_json("tables", "orders.json")["content_hash"]
    cursor = shop.tick(instance, None).cursor
    rewrite(shop, "orders")
    stage_one = shop.tick(instance, cursor)
    [ingest] = stage_one.run_requests
    assert selection(ingest) == ingest_selection(["stores", "orders", "reviews"])
    assert ingest.tags["kumo/retrain"] == "none"
    for query in shop.queries:  # the rules read the pointer best_model wrote and the health predictions wrote
        psi = health(shop, query, DAY)["score_psi"]
        kept = f"best_model shop/{query} kept: model age 0.0 days <= 30; score PSI {psi:.3f} <= inf on {DAY}"
        assert kept in ingest.tags["kumo/reason"]
    waiting = shop.tick(instance, stage_one.cursor)
    assert not waiting.run_requests and "not launched yet" in waiting.skip_message
    run = shop.execute(instance, ingest)
    assert run.success
    for key in ingest.asset_selection:  # the implied stores table too, rebuilt from the new orders
        assert instance.get_latest_materialization_event(key).run_id == run.run_id
    assert shop.read_json("tables", "orders.json")["content_hash"] != published

    stage_two = shop.tick(instance, stage_one.cursor)
    requests = {request.tags["kumo/query"]: request for request in stage_two.run_requests}
    assert set(requests) == {"shop/big_spender", "shop/spend"}
    for query in shop.queries:
        name, request, latest = f"shop/{query}", requests[f"shop/{query}"], latest_day(shop, query)
        assert selection(request) == {f"shop/{query}/predictions", f"shop/{query}/embeddings"}  # no refit
        assert request.partition_key == latest and request.tags["dagster/partition"] == latest
        reason = f"after tables changed: shop/orders: {name} {latest}: predictions, embeddings"
        assert request.tags["kumo/reason"] == reason
        assert not shop.path("predictions", query, f"{latest}.parquet").exists()
        assert shop.execute(instance, request).success
        for kind in ("predictions", "embeddings"):
            assert shop.path(kind, query, f"{latest}.parquet").exists()
        rescored, before = health(shop, query, latest), health(shop, query, DAY)
        assert rescored["data_version"] != before["data_version"]  # scored on the new stores and tables
        assert rescored["model_version"] == before["model_version"]  # by the same model
        assert shop.read_json("best_model", query, "pointer.json") == pointers[query]
    done = shop.tick(instance, stage_two.cursor)
    assert not done.run_requests
    assert done.skip_message.startswith("refresh finished (all succeeded); no source changed")


def test_failed_ingest_run_stops_before_rescoring(shop, instance):
    """A stage-one run that really fails: the new reviews repeat a primary key, so the blocking check fails."""
    published = shop.path("tables", "reviews.parquet").read_bytes()
    cursor = shop.tick(instance, None).cursor
    reviews = make_tables()["reviews"]
    pl.concat([reviews, reviews.head(1)]).write_parquet(shop.spec_path.parent / "reviews.parquet")
    [ingest] = (stage_one := shop.tick(instance, cursor)).run_requests
    assert [t["query"] for t in NewDataState.from_cursor(stage_one.cursor).pending["targets"]] == [
        "big_spender", "spend"]  # fmt: skip
    run = shop.execute(instance, ingest)
    assert not run.success
    [check] = [e for e in run.get_asset_check_evaluations() if e.check_name == "primary_key"]
    assert check.asset_key == AssetKey(["shop", "reviews"]) and not check.passed
    assert shop.path("tables", "reviews.parquet").read_bytes() == published  # nothing was written
    after = shop.tick(instance, stage_one.cursor)
    assert not after.run_requests
    assert f"ingest run {ingest.run_key} FAILURE: nothing rescored" in after.skip_message
    assert NewDataState.from_cursor(after.cursor).pending is None


def test_rules_refit_best_model_and_say_why(shop, instance, monkeypatch):
    """The rules on the real pointer.json and health file: score drift through its threshold, the model's
    age by a tick 41 days later; stage two really refits best_model and rescores with it."""
    psi = {query: health(shop, query, DAY)["score_psi"] for query in shop.queries}
    pointers = {query: shop.read_json("best_model", query, "pointer.json") for query in shop.queries}
    cursor = shop.tick(instance, None).cursor
    rewrite(shop, "users")

    monkeypatch.setenv("KUMO_RETRAIN_MAX_SCORE_PSI", "0")  # any drift at all
    [drifted] = shop.tick(instance, cursor).run_requests
    assert selection(drifted) == ingest_selection(["users", "orders", "reviews"])  # best models only after
    assert drifted.tags["kumo/retrain"] == "; ".join(
        f"best_model shop/{query}: score PSI {psi[query]:.3f} > 0 on {DAY}"
        for query in ("big_spender", "spend")
    )
    assert "model age" not in drifted.tags["kumo/reason"]  # the young models: the age rule held

    monkeypatch.setenv("KUMO_RETRAIN_MAX_SCORE_PSI", "inf")
    later = time.time() + 41 * SECONDS_PER_DAY
    assert shop.tick(instance, cursor).run_requests[0].tags["kumo/retrain"] == "none"  # today: young models
    stage_one = shop.tick(instance, cursor, now=later)
    [aged] = stage_one.run_requests
    assert aged.tags["kumo/retrain"] == (
        "best_model shop/big_spender: model age 41.0 days > 30; best_model shop/spend: model age 41.0 days > 30"
    )
    monkeypatch.setenv("KUMO_RETRAIN_MAX_MODEL_AGE_DAYS", "50")
    [calm] = shop.tick(instance, cursor, now=later).run_requests
    assert calm.tags["kumo/retrain"] == "none"
    held = (
        f"best_model shop/spend kept: model age 41.0 days <= 50; score PSI {psi['spend']:.3f} <= inf on {DAY}"
    )
    assert held in calm.tags["kumo/reason"]
    monkeypatch.delenv("KUMO_RETRAIN_MAX_MODEL_AGE_DAYS")

    assert shop.execute(instance, aged).success  # stage one of the tick 41 days later, then stage two
    stage_two = shop.tick(instance, stage_one.cursor)
    requests = {request.tags["kumo/query"]: request for request in stage_two.run_requests}
    assert set(requests) == {"shop/big_spender", "shop/spend"}
    for query in shop.queries:
        request, latest = requests[f"shop/{query}"], latest_day(shop, query)
        assert selection(request) == {
            f"shop/{query}/best_model",
            f"shop/{query}/predictions",
            f"shop/{query}/embeddings",
        }  # fmt: skip  (the refit, never the study)
        assert request.tags["kumo/retrain"] == f"best_model shop/{query}: model age 41.0 days > 30"
        assert request.partition_key == latest
        assert shop.execute(instance, request).success
        pointer = shop.read_json("best_model", query, "pointer.json")
        assert pointer["refit_at"] > pointers[query]["refit_at"]
        assert pointer["run_key"] != pointers[query]["run_key"]  # refit on the new tables
        assert health(shop, query, latest)["model_version"] != health(shop, query, DAY)["model_version"]
        assert shop.path("embeddings", query, f"{latest}.parquet").exists()
    done = shop.tick(instance, stage_two.cursor)
    assert done.skip_message.startswith("refresh finished (all succeeded)")


def test_changed_s3_object_is_noticed(tmp_path, instance, s3_endpoint, s3_bucket, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)  # before the Definitions read it into the s3 resource
    client = ObjectStoreConnector(endpoint_url=s3_endpoint, region="us-east-1").client()
    spec_text = SPEC.replace("source: products.{ext}", f"source: s3://{s3_bucket}/shop/products/*.{{ext}}")
    shop = Shop.fresh(tmp_path, spec_text=spec_text)
    assert shop.defs.resources["s3"].endpoint_url == EnvVar("AWS_ENDPOINT_URL")  # what the sensor lists with
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
    shop = Shop.fresh(tmp_path)
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
