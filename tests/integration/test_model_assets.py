"""Model assets through Dagster: either family trains from the run config; a re-run resumes, never retrains."""

from __future__ import annotations

import json
import math

import polars as pl
import pytest
import torch
from dagster import AssetKey, instance_for_test, materialize

from kumo_assets.asset_keys import stage_of
from kumo_assets.definitions import build_definitions, plain_resources
from models.gbdt import GBDTModel
from relational.pql.queries import load_queries, queries_beside
from relational.spec_loader import load_spec
from tests.integration.test_tasks import QUERIES
from tests.support.fake_db import data_assets, write_fake_db
from training.refit import refit_config
from training.run import train_query_model
from training.run_config_checks import RunConfigError

MODEL = AssetKey(["shop", "big_spender", "model"])
OP = "shop__big_spender__model"


def shop_definitions(tmp_path, queries: str = QUERIES, data_plane: str | None = None,
                     graph_store_root: str | None = None):  # fmt: skip
    """Definitions of the fake shop database with its queries (the hashing text encoder: the sentence model
    is tested elsewhere); the data plane defaults to ``tmp_path / "plane"``."""
    spec_path = write_fake_db(tmp_path / "shop")
    (spec_path.parent / "queries.yaml").write_text(queries)
    return build_definitions([spec_path], data_plane or str(tmp_path / "plane"), graph_store_root, "hashing")


@pytest.fixture
def shop(tmp_path):
    return shop_definitions(tmp_path), tmp_path


def run(defs, selection, instance, **config):
    everything = [
        *data_assets(defs),
        *[a for a in defs.assets if MODEL in a.keys],
    ]  # not the studies: tested apart
    assets = [a for a in everything if not selection or any(key in selection for key in a.keys)]
    run_config = {"ops": {OP: {"config": config}}} if config else None
    return materialize(assets, resources=defs.resources, instance=instance, run_config=run_config,
                       selection=selection)  # fmt: skip


def test_gnn_model_trains_reports_metrics_and_resumes_instead_of_retraining(shop):
    defs, tmp_path = shop
    config = {"epochs": 2, "channels": 16, "fanouts": [4, 2], "batch_size": 8, "device": "cpu"}
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert run(defs, None, instance).success  # stores and tables, default model config
        assert run(defs, [MODEL], instance, **config).success
        first = instance.get_latest_materialization_event(MODEL).asset_materialization.metadata
        assert run(defs, [MODEL], instance, **config).success
        again = instance.get_latest_materialization_event(MODEL).asset_materialization.metadata
    assert first["family"].value == "gnn" and "auroc" in [
        c.name for c in first["metrics"].value.schema.columns
    ]
    assert first["resumed_from_epoch"].value == "none"
    assert again["resumed_from_epoch"].value == "1"  # the finished run's checkpoint: nothing retrained
    assert again["metrics"].value == first["metrics"].value
    folder = tmp_path / "plane" / "shop" / "models" / "big_spender" / first["run_key"].value
    summary = json.loads((folder / "summary.json").read_text())
    # a hand-set model is a selection run: validation only; holdout numbers belong to best_model alone
    assert summary["task_type"] == "binary_classification" and set(summary["metrics"]) == {"val"}
    assert set(summary["intervals"]) == {"val"}
    # the tune metric with its interval over resampled entities (users), not rows
    table = pl.read_parquet(tmp_path / "plane" / "shop" / "training_tables" / "big_spender.parquet")
    for split in ("val",):
        interval = summary["intervals"][split]
        assert interval["estimate"] == pytest.approx(summary["metrics"][split]["auroc"])
        assert interval["groups"] == table.filter(pl.col("split") == split)["entity"].n_unique()
        assert interval["low"] <= interval["high"] or math.isnan(interval["low"])
    rows = {record.data["split"]: record.data for record in first["metrics"].value.records}
    assert set(rows) == {"val"} and rows["val"]["auroc"] == pytest.approx(
        summary["metrics"]["val"]["auroc"], abs=1e-3
    )
    assert rows["val"]["auroc 95% low"] == pytest.approx(summary["intervals"]["val"]["low"], abs=1e-3) or math.isnan(
        summary["intervals"]["val"]["low"])  # fmt: skip
    assert "gbdt_trees" not in first["config"].value  # a GNN's page lists GNN settings only
    saved = torch.load(folder / "model.pt", weights_only=False)
    assert saved["spec"]["task_type"] == "binary_classification" and saved["state_dict"]


def test_gbdt_model_trains_from_the_same_asset(shop):
    defs, tmp_path = shop
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert run(
            defs, None, instance, family="gnn", epochs=1, channels=8, fanouts=[2], device="cpu"
        ).success
        assert run(defs, [MODEL], instance, family="gbdt", gbdt_trees=30).success
        metadata = instance.get_latest_materialization_event(MODEL).asset_materialization.metadata
    assert metadata["family"].value == "gbdt"
    assert {record.data["split"] for record in metadata["metrics"].value.records} == {"val"}
    assert "conv" not in metadata["config"].value and metadata["config"].value["gbdt_trees"] == 30
    folder = tmp_path / "plane" / "shop" / "models" / "big_spender" / metadata["run_key"].value
    assert (folder / "model.lgb").stat().st_size > 0
    # the refit keeps exactly the boosting rounds its selection run chose on validation (no early stopping on
    # the validation rows it now trains on), and only the refit is scored on test
    selection = json.loads((folder / "summary.json").read_text())
    rounds = selection["best_epoch"]
    assert 1 <= rounds <= 30
    config = refit_config({"params": metadata["config"].value, "best_epoch": rounds})
    assert config.refit and config.gbdt_trees == rounds
    resources = plain_resources(defs)
    spec = load_spec(tmp_path / "shop" / "graph.yaml")
    query = load_queries(queries_beside(spec.path))["big_spender"]
    refit = train_query_model(spec, query, config, resources["data_plane"], resources["graph_store"],
                              resources["feature_store"], lambda message: None)  # fmt: skip
    model = GBDTModel.load(
        tmp_path / "plane" / "shop" / "models" / "big_spender" / refit.run_key / "model.lgb"
    )
    assert model.best_iterations == [rounds] and model.boosters[0].num_trees() == rounds
    assert set(refit.metrics) == {"val", "test"}
    # RelBench's protocol: the trial's configuration retrained as the trial was (training rows, early stopping
    # on validation), so validation scores as in selection, and the test is scored once
    retrained_config = refit_config({"params": metadata["config"].value, "best_epoch": rounds}, "train_rows")
    assert not retrained_config.refit and retrained_config.holdout and retrained_config.gbdt_trees == 30
    retrained = train_query_model(spec, query, retrained_config, resources["data_plane"], resources["graph_store"],
                                  resources["feature_store"], lambda message: None)  # fmt: skip
    assert set(retrained.metrics) == {"val", "test"}
    assert retrained.metrics["val"] == pytest.approx(selection["metrics"]["val"])
    with pytest.raises(ValueError, match="choose one of"):
        refit_config({"params": {}}, "refit_twice")


def test_unknown_family_fails_with_the_choices(shop):
    defs, tmp_path = shop
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert run(defs, None, instance, epochs=1, channels=8, fanouts=[2], device="cpu").success
        written = sorted(path for path in (tmp_path / "plane").rglob("*") if path.is_file())
        with pytest.raises(RunConfigError, match="family is 'xgboost': choose gnn or gbdt"):
            run(defs, [MODEL], instance, family="xgboost")
        # a config no model can train with is refused before anything runs: no model, no run folder
        with pytest.raises(
            RunConfigError, match=r"epochs \(passes over the training rows\) is 0: set it to 1"
        ):
            run(defs, [MODEL], instance, epochs=0, device="cpu")
        with pytest.raises(RunConfigError, match=r"gbdt_trees \(boosting rounds\) is -5"):
            run(defs, [MODEL], instance, family="gbdt", gbdt_trees=-5)
        assert sorted(path for path in (tmp_path / "plane").rglob("*") if path.is_file()) == written
        # the precision reaches the trainer and the sampling strategy the sampler: unknown ones fail there
        with pytest.raises(ValueError, match="precision 'fp16': choose one of auto, tf32, bf16, fp32"):
            run(defs, [MODEL], instance, epochs=1, channels=8, fanouts=[2], device="cpu", precision="fp16")
        with pytest.raises(ValueError, match="strategy must be 'uniform' or 'last', got 'newest'"):
            run(
                defs,
                [MODEL],
                instance,
                epochs=1,
                channels=8,
                fanouts=[2],
                device="cpu",
                sampling_strategy="newest",
            )


def test_the_lineage_reads_as_the_pipeline(tmp_path):
    defs = shop_definitions(tmp_path)
    upstream = {tuple(a.key.path[1:]): {stage_of(key) for key in a.dependency_keys} for a in defs.assets}
    # a model reads its training table and the stores; the tables are upstream of those
    stores = {"graph_store", "feature_store"}
    assert upstream["big_spender", "model"] == upstream["big_spender", "study"] == {"training_table", *stores}
    assert upstream["big_spender", "best_model"] == {"study"}
    assert upstream["big_spender", "predictions"] == {"best_model", *stores}
    # each node is labelled by what it is and grouped under its query, so four `big_spender`s no longer meet
    groups = {a.key: a.group_names_by_key[a.key] for a in defs.assets if len(a.keys) == 1}
    assert groups[AssetKey(["shop", "big_spender", "study"])] == "shop_big_spender"
    assert groups[AssetKey(["shop", "graph_store"])] == "shop_stores"
    assert groups[AssetKey(["shop", "orders"])] == "shop_tables"
