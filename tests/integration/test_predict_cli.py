"""`kumo predict` on a copy of F1 cut at the end of 2005: anchors years after its newest row, bad input that
names the rows and writes nothing, ``--skip-invalid``, and output to a real S3 endpoint (moto)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess

import polars as pl
import pytest
from dagster import instance_for_test, materialize

from cli.main import main
from kumo_assets.asset_keys import stage_of
from kumo_assets.definitions import build_definitions
from stores.object_store import ObjectStoreConnector
from tests.conftest import F1_SPEC, REPO_ROOT
from tests.support.servers import venv_tool

QUERY = "driver_dnf"
CUT = dt.datetime(2006, 1, 1, tzinfo=dt.UTC)
QUERIES = f"""\
{QUERY}:
  query: >-
    PREDICT COUNT(results.* WHERE results.statusId != 1, 0, 30, days) > 0
    FOR EACH drivers.driverId ASSUMING COUNT(results.*, 0, 30, days) > 0
  anchors: {{val: 2004-01-01, test: 2005-01-01, eval_anchors: 6}}
"""
STUDY = {"mode": "fast", "n_trials": 1, "parallelism": 1, "families": ["gnn"], "device": "cpu",
         "space": {"max_steps_per_epoch": 5, "epochs": [1, 1], "channels": [16, 16]}}  # fmt: skip


def truncated_f1(folder) -> None:
    """The shipped F1 tables with every race from ``CUT`` on (and every row of those races) removed."""
    shutil.copytree(F1_SPEC.parent, folder)
    races = pl.read_parquet(folder / "races.parquet").filter(pl.col("date").cast(pl.Date) < CUT.date())
    races.write_parquet(folder / "races.parquet")
    kept = races["raceId"]
    for path in folder.glob("*.parquet"):
        frame = pl.read_parquet(path)
        if path.name != "races.parquet" and "raceId" in frame.columns:
            frame.filter(pl.col("raceId").is_in(kept.implode())).write_parquet(path)
    (folder / "queries.yaml").write_text(QUERIES)


@pytest.fixture(scope="module", name="f1_cut")
def f1_cut_fixture(tmp_path_factory):
    """The cut F1 through Dagster up to ``best_model`` of driver_dnf (a one-trial study): what predict reads."""
    tmp_path = tmp_path_factory.mktemp("f1cut")
    truncated_f1(tmp_path / "f1")
    defs = build_definitions([tmp_path / "f1" / "graph.yaml"], str(tmp_path / "plane"))
    wanted = [a for a in defs.assets if stage_of(a.key) not in {"model", "predictions", "embeddings"}]
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        config = {"ops": {f"f1__{QUERY}__study": {"config": STUDY}}}
        assert materialize(wanted, resources=defs.resources, instance=instance, run_config=config).success
    return tmp_path


def predict(f1_cut, entities: pl.DataFrame, out, *extra: str) -> int:
    path = f1_cut / "entities.parquet"
    entities.write_parquet(path)
    return main(["predict", "--query", QUERY, "--spec", str(f1_cut / "f1" / "graph.yaml"), "--entities", str(path),
                 "--out", str(out), "--data-plane", str(f1_cut / "plane"), *extra])  # fmt: skip


def rows(entities: list, anchors: list) -> pl.DataFrame:
    return pl.DataFrame({"entity": entities, "anchor_time": [dt.date.fromisoformat(a) for a in anchors]})


def test_the_cli_scores_anchors_years_after_the_newest_row(f1_cut):
    """The real `kumo` executable, as a user runs it: a 2012 anchor on data that ends in 2005."""
    entities = rows([1, 2, 30], ["2012-06-01", "2005-06-01", "2012-06-01"])
    entities.write_parquet(f1_cut / "cli_rows.parquet")
    out = f1_cut / "cli_out.parquet"
    completed = subprocess.run(
        [venv_tool("kumo"), "predict", "--query", QUERY, "--spec", str(f1_cut / "f1" / "graph.yaml"),
         "--entities", str(f1_cut / "cli_rows.parquet"), "--out", str(out)],
        cwd=REPO_ROOT, env={**os.environ, "KUMO_DATA_PLANE": str(f1_cut / "plane")}, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    summary = json.loads(completed.stdout)
    frame = pl.read_parquet(out)
    assert summary["rows"] == frame.height == 3 and summary["oldest_data_age_days"] > 6 * 365
    assert frame["entity"].to_list() == [1, 2, 30]
    assert frame.columns == ["entity", "anchor_time", "probability", "score", "predicted_class", "model_version",
                             "data_version", "data_age_days"]  # fmt: skip
    age = frame["data_age_days"].to_list()
    assert age[0] > 6 * 365 and age[1] < 200  # how stale the newest visible row was, per anchor
    assert frame["probability"].is_between(0, 1).all() and frame["model_version"][0].startswith("gnn:")


@pytest.mark.parametrize(
    ("entities", "message"),
    [
        (rows([1, 999_999], ["2005-06-01", "2005-06-01"]), r"row 1 \(999999\): unknown drivers.driverId"),
        (rows([1, 2], ["2005-06-01", "1940-01-01"]), r"row 1 \(2\): anchor before the data begins"),
        (
            pl.DataFrame({"driverId": [1], "anchor_time": [dt.date(2005, 6, 1)]}),
            r"missing column\(s\) \['entity'\]",
        ),
    ],
)
def test_bad_rows_are_named_and_nothing_is_written(f1_cut, entities, message, capsys):
    out = f1_cut / "bad.parquet"
    assert predict(f1_cut, entities, out) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


def test_skip_invalid_leaves_out_and_lists_the_bad_rows(f1_cut, capsys):
    out = f1_cut / "skipped.parquet"
    assert predict(f1_cut, rows([1, 999_999, 3], ["2005-06-01"] * 3), out, "--skip-invalid") == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["skipped"] == 1 and "999999" in captured.err
    assert pl.read_parquet(out)["entity"].to_list() == [1, 3]


def test_predictions_go_to_s3(f1_cut, s3_endpoint, s3_bucket, capsys, monkeypatch):
    """A real S3 endpoint (moto_server on 127.0.0.1): the file appears whole, under the key asked for."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    out = f"s3://{s3_bucket}/served/dnf.parquet"
    assert predict(f1_cut, rows([1, 2], ["2005-06-01", "2005-07-01"]), out) == 0
    assert json.loads(capsys.readouterr().out)["out"] == out
    options = ObjectStoreConnector(endpoint_url=s3_endpoint, region="us-east-1").storage_options()
    frame = pl.read_parquet(out, storage_options=options)
    assert frame["entity"].to_list() == [1, 2] and frame.height == 2
