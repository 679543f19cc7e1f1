"""Training tables through Dagster (asset per query) and the `kumo` command line."""

from __future__ import annotations

import json
import subprocess

import polars as pl
import pytest
from dagster import AssetKey, instance_for_test, materialize

from kumo_assets.definitions import build_definitions
from kumo_assets.tasks import label_table
from relational.errors import SpecError
from relational.pql.queries import load_queries
from tests.conftest import F1_SPEC, REPO_ROOT
from tests.support.fake_db import data_assets, write_fake_db
from tests.support.servers import venv_tool

QUERIES = """\
big_spender:
  query: PREDICT SUM(orders.amount, 0, 14, days) > 60 FOR EACH users.user_id
  anchors: {timestamps: {train: [2024-02-01, 2024-03-01], val: [2024-04-01], test: [2024-05-01]}}
spend: "PREDICT SUM(orders.amount, 0, 30) FOR EACH users.user_id WHERE COUNT(orders.*, -30, 0) > 0"
"""


def test_training_tables_materialise_with_metadata(tmp_path):
    spec_path = write_fake_db(tmp_path / "shop")
    (spec_path.parent / "queries.yaml").write_text(QUERIES)
    defs = build_definitions([spec_path], str(tmp_path / "plane"))
    with instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = materialize(data_assets(defs), resources=defs.resources, instance=instance)
        assert result.success
        event = instance.get_latest_materialization_event(AssetKey(["shop", "big_spender", "training_table"]))
        metadata = event.asset_materialization.metadata
    checks = {(e.asset_key.path[1], e.check_name): e for e in result.get_asset_check_evaluations()
              if e.asset_key.path[-1] == "training_table"}  # fmt: skip
    assert set(checks) == {
        (q, c) for q in ("big_spender", "spend") for c in ("leakage_audit", "labels_per_split")
    }
    assert all(checks[query, "leakage_audit"].passed for query in ("big_spender", "spend"))
    # 40 users, 4 anchors: the fake shop's val and test splits hold too few labels to say much
    thin = checks["big_spender", "labels_per_split"]
    assert not thin.passed and "val:" in thin.description and thin.severity.value == "WARN"
    assert metadata["task_type"].value == "binary_classification"
    assert metadata["leakage_audit"].value.startswith("passed: rows ")
    labels = {record.data["split"]: record.data for record in metadata["labels"].value.records}
    splits = {record.data["split"]: record.data for record in metadata["splits"].value.records}
    assert list(labels) == ["train", "val", "test"] and 0 <= labels["train"]["positive rate"] <= 1
    assert [column.name for column in metadata["labels"].value.schema.columns] == [
        "split", "rows", "positives", "positive rate"]  # fmt: skip
    table = pl.read_parquet(tmp_path / "plane" / "shop" / "training_tables" / "big_spender.parquet")
    assert table.columns == ["entity", "anchor_time", "label", "split"]
    assert table["split"].unique().sort().to_list() == ["test", "train", "val"]
    assert set(table["entity"].to_list()) <= set(range(1, 41))  # the users' own ids, not node ids
    written = json.loads((tmp_path / "plane" / "shop" / "training_tables" / "big_spender.json").read_text())
    assert written["rows"]["train"] == int((table["split"] == "train").sum()) == splits["train"]["rows"]
    assert labels["train"]["positives"] == int(table.filter(pl.col("split") == "train")["label"].sum())


def test_bad_query_fails_when_definitions_load(tmp_path):
    spec_path = write_fake_db(tmp_path / "shop")
    (spec_path.parent / "queries.yaml").write_text(
        'oops: "PREDICT COUNT(orders.*, 0, 30 FOR EACH users.user_id"\n'
    )
    with pytest.raises(Exception, match=r"expected '\)' to close COUNT\("):
        build_definitions([spec_path], str(tmp_path / "plane"))


def test_queries_file_errors_name_the_line(tmp_path):
    path = tmp_path / "queries.yaml"
    path.write_text("a: PREDICT x.y FOR EACH x.id\nb:\n  query: PREDICT x.y FOR EACH x.id\n  anchor: {}\n")
    with pytest.raises(SpecError, match=r"line 2: query 'b': unknown key\(s\) \['anchor'\]"):
        load_queries(path)


def kumo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [venv_tool("kumo"), *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )


def test_cli_explain_prints_json():
    completed = kumo("query", "explain", "PREDICT MIN(qualifying.position, 0, 30) <= 3 FOR EACH drivers.driverId",
                     "--spec", str(F1_SPEC))  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    explained = json.loads(completed.stdout)
    assert explained["task_type"] == "binary_classification"
    assert explained["windows"]["target0"]["window"] == "(0, 30] days"


def test_cli_table_writes_parquet(tmp_path):
    out = tmp_path / "top3.parquet"
    completed = kumo(
        "query", "table", "PREDICT MIN(qualifying.position, 0, 30, days) <= 3 FOR EACH drivers.driverId",
        "--spec", str(F1_SPEC), "--val", "2005-01-01", "--test", "2010-01-01", "--eval-anchors", "40",
        "--out", str(out),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["rows"] == {"train": 1353, "val": 588, "test": 726}
    assert pl.read_parquet(out).height == 1353 + 588 + 726


def test_cli_reports_query_errors_with_a_caret():
    completed = kumo("query", "explain", "PREDICT AVG(result.positionOrder, 0, 60) FOR EACH drivers.driverId",
                     "--spec", str(F1_SPEC))  # fmt: skip
    assert completed.returncode == 2
    lines = completed.stderr.splitlines()
    assert "unknown table 'result'; did you mean 'results'" in lines[0]
    assert lines[2].index("^") == lines[1].index("result.")


def test_label_tables_for_numeric_and_class_labels_are_rounded_for_reading():
    numeric = {"train": {"rows": 3, "mean": 1.234567891, "std": 0.5, "min": 0.0, "median": 1.0, "max": 3.0},
               "val": {"rows": 0}, "test": {"rows": 1, "mean": 2.0, "std": None, "min": 2.0, "median": 2.0, "max": 2.0}}  # fmt: skip
    table = label_table(numeric, "regression").value
    train, val, _ = (record.data for record in table.records)
    assert train["mean"] == 1.235 and val["mean"] == "nan" and val["rows"] == 0
    classes = {
        "train": {"rows": 9, "top": [["a", 6], ["b", 3]]},
        "val": {"rows": 0},
        "test": {"rows": 1, "top": [["a", 1]]},
    }
    records = [record.data for record in label_table(classes, "multiclass_classification").value.records]
    assert records[0]["most frequent labels (count)"] == "a (6), b (3)" and records[1]["rows"] == 0
