"""docs/bring_your_own_database.md, run as written on the real Complete Journey files.

The commands are read from the doc's ```bash blocks, so the doc and this test cannot drift. To stay near two
minutes on 2 cores, steps 1 (tables, stores, both training tables) and 2 (a two-trial churn study) run for
real. Steps 3 and 4 (best model, predictions) are only checked to select the asset they name and, for step 4,
a partition that exists.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml
from dagster import AssetKey, AssetSelection

from kumo_assets.definitions import build_definitions
from tests.conftest import REPO_ROOT, SHARED_DATA

pytestmark = pytest.mark.integration

DOC = REPO_ROOT / "docs" / "bring_your_own_database.md"
EXAMPLE = REPO_ROOT / "kumo_assets" / "examples" / "completejourney"
COMMAND = ".venv/bin/dagster asset materialize "


def doc_lines() -> list[str]:
    """Every line of the doc's ```bash blocks, continuation lines joined."""
    blocks = re.findall(r"^```bash\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)
    return [line.strip() for line in "\n".join(blocks).replace("\\\n", " ").splitlines() if line.strip()]


def doc_commands() -> list[str]:
    return [line for line in doc_lines() if line.startswith(COMMAND)]


def option(command: str, *names: str) -> str | None:
    """The value of the first of ``names`` given in ``command`` (shell quoting undone)."""
    words = shlex.split(command)
    for index, word in enumerate(words[:-1]):
        if word in names:
            return words[index + 1]
    return None


def run(command: str, env: dict[str, str]) -> None:
    """One doc command, in the repository root, with this interpreter's venv standing in for `.venv/bin`."""
    command = command.replace(".venv/bin/", f"{Path(sys.executable).parent}/", 1)
    done = subprocess.run(["bash", "-c", command], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, f"{command}\n{(done.stdout + done.stderr)[-6000:]}"


def test_doc_names_the_example_and_the_environment():
    exports = dict(re.findall(r"^export (\w+)=(\S+)", "\n".join(doc_lines()), flags=re.M))
    assert set(exports) >= {"KUMO_SHARED_DATA", "KUMO_GRAPH_SPEC", "KUMO_DATA_PLANE", "DAGSTER_HOME"}
    assert exports["KUMO_GRAPH_SPEC"].endswith("kumo_assets/examples/completejourney/graph.yaml")
    assert len(doc_commands()) == 4 and "make dev" in doc_lines()
    config = option(doc_commands()[1], "-c", "--config")
    assert config and set(yaml.safe_load((REPO_ROOT / config).read_text())["ops"]) == {
        "completejourney__churn__study"
    }


def test_walkthrough(tmp_path, monkeypatch):
    if not (SHARED_DATA / "completejourney").is_dir():
        pytest.fail(f"{SHARED_DATA / 'completejourney'} is missing: this walkthrough reads it (put "
                    "../shared/data beside the repository or set KUMO_SHARED_DATA)")  # fmt: skip
    plane, home = tmp_path / "plane", tmp_path / "dagster"
    plane.mkdir()
    home.mkdir()
    env = {**os.environ, "KUMO_SHARED_DATA": str(SHARED_DATA), "KUMO_GRAPH_SPEC": str(EXAMPLE / "graph.yaml"),
           "KUMO_DATA_PLANE": str(plane), "DAGSTER_HOME": str(home)}  # fmt: skip
    tables_and_stores, study, best_model, predictions = doc_commands()

    # Steps 3 and 4: each selects exactly its asset, and the partition exists.
    monkeypatch.setenv("KUMO_SHARED_DATA", str(SHARED_DATA))
    graph = build_definitions([EXAMPLE / "graph.yaml"], str(plane)).resolve_asset_graph()
    for command, stage in ((best_model, "best_model"), (predictions, "predictions")):
        selected = AssetSelection.from_string(option(command, "--select")).resolve(graph)
        assert selected == {AssetKey(["completejourney", "churn", stage])}, command
    partitions = graph.get(AssetKey(["completejourney", "churn", "predictions"])).partitions_def
    assert option(predictions, "--partition") in partitions.get_partition_keys()

    # Step 1: tables, stores and both training tables.
    run(tables_and_stores, env)
    out = plane / "completejourney"
    assert {path.stem for path in (out / "tables").glob("*.parquet")} == set(
        yaml.safe_load((EXAMPLE / "graph.yaml").read_text())["tables"]
    )
    assert (out / "graph_store" / "CURRENT").is_file() and (out / "feature_store" / "CURRENT").is_file()
    for query in ("churn", "spend"):
        table = pl.read_parquet(out / "training_tables" / f"{query}.parquet")
        per_split = table.group_by("split").agg(
            pl.len().alias("rows"), pl.col("entity").n_unique().alias("households")
        )
        counts = {row["split"]: row for row in per_split.to_dicts()}
        assert set(counts) == {"train", "val", "test"} and all(row["rows"] > 0 for row in counts.values())
        assert counts["test"]["households"] >= 1000, counts
        meta = json.loads((out / "training_tables" / f"{query}.json").read_text())
        assert meta["leakage_audit"]["passed"]
        assert {split: meta["rows"][split] for split in counts} == {s: r["rows"] for s, r in counts.items()}
        if query == "churn":  # some households churn in every split, most do not
            rates = [meta["label_distribution"][split]["positive_rate"] for split in counts]
            assert all(0.02 < rate < 0.5 for rate in rates), rates

    # Step 2: the churn study trains real models.
    run(study, env)
    summary = json.loads((out / "hpo" / "churn" / "summary.json").read_text())
    complete = [row for row in summary["leaderboard"] if row["state"] == "complete"]
    assert complete and summary["metric"] == "auroc"
    assert 0.5 < summary["best"]["value"] <= 1.0  # validation AUROC of a real model
