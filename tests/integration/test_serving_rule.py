"""The serving rule (docs/automl.md) on real trials: F1 driver-top3 studies of both families, one whose
validation prefers the winner alone and one whose validation prefers the blend, each through best_model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from dagster import AssetKey, instance_for_test, materialize
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score

from kumo_assets.asset_keys import stage_of
from kumo_assets.definitions import DEFAULT_SPEC, build_definitions
from models.blending import scored_rows_from_bytes

QUERY = "driver_top3"
STUDY, BEST = AssetKey(["f1", QUERY, "study"]), AssetKey(["f1", QUERY, "best_model"])
# Two seeded trials (a GNN of the recent preset and the GBDT's defaults): a few seconds each on F1. Trained
# like this the GNN validates at 0.87-0.90 AUROC, level with the GBDT (0.89), and their blend wins (3 of the 4
# studies tried); the GNN's score moves with the study seed (0.70 once), so the test tries up to 4 study seeds.
SPACE = {"max_steps_per_epoch": 30, "epochs": [4, 4], "gbdt_trees": [100, 300], "sampling": ["recent2"]}
# A GNN that barely trains (one step at a learning rate of 1e-6): its near-random ranking only dilutes the
# GBDT's, so validation prefers the GBDT alone.
UNTRAINED_GNN = {**SPACE, "max_steps_per_epoch": 1, "epochs": [1, 1], "lr": [1e-6, 1e-6]}


@pytest.fixture(name="f1")
def f1_fixture(tmp_path):
    """F1's definitions and instance, with its tables, stores and the driver-top3 training table built."""
    defs = build_definitions([DEFAULT_SPEC], str(tmp_path / "plane"))
    (tmp_path / "dagster").mkdir()
    inputs = [a for a in defs.assets if stage_of(a.key) in {"raw", "graph_store", "feature_store"} or
              a.key == AssetKey(["f1", QUERY, "training_table"]) or len(a.key.path) == 2]  # fmt: skip
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        assert materialize(inputs, resources=defs.resources, instance=instance).success
        yield defs, instance, tmp_path / "plane"


def study_then_best_model(defs, instance, seed: int, space: dict) -> None:
    config = {"mode": "fast", "n_trials": 2, "parallelism": 2, "device": "cpu", "seed": seed,
              "space": space, "pruner": "none"}  # fmt: skip
    study = [a for a in defs.assets if STUDY in a.keys]
    run_config = {"ops": {f"f1__{QUERY}__study": {"config": config}}}
    assert materialize(study, resources=defs.resources, instance=instance, run_config=run_config).success
    best = [a for a in defs.assets if BEST in a.keys]
    assert materialize(best, resources=defs.resources, instance=instance).success


def stored_rows(plane, run_key: str) -> dict:
    return scored_rows_from_bytes(next(plane.glob(f"f1/models/{QUERY}/{run_key}/scored.npz")).read_bytes())


def rule_on_validation(plane, summary: dict) -> bool:
    """The rule, recomputed from the two families' best trials' stored validation rows: serve the blend when
    the rank average of their scores has a higher AUROC than either alone."""
    val = {
        family: stored_rows(plane, best["run_key"])["val"]
        for family, best in summary["best_by_family"].items()
    }
    assert set(val) == {"gnn", "gbdt"}
    labels = val["gnn"].labels
    blended = np.mean([rankdata(rows.outputs) / len(rows.outputs) for rows in val.values()], axis=0)
    return roc_auc_score(labels, blended) > max(roc_auc_score(labels, rows.outputs) for rows in val.values())


def test_best_model_serves_what_the_rule_picks_on_real_trials_in_each_branch(f1):
    defs, instance, plane = f1
    verdicts = []
    studies = [(0, UNTRAINED_GNN), *((seed, SPACE) for seed in (1, 2, 3, 4))]
    for seed, space in studies:
        study_then_best_model(defs, instance, seed, space)
        verdicts.append(check_served_as_the_rule_picks(instance, plane, seed))
        if verdicts[0] is False and True in verdicts[1:]:
            break
    assert verdicts[0] is False  # the untrained GNN: the GBDT alone
    assert True in verdicts[1:], verdicts  # trained GNNs: a blend, in at least one of 4 studies


def check_served_as_the_rule_picks(instance, plane, seed: int) -> bool:
    """best_model after a study of seed ``seed``: it serves what the rule picks (returned), with one holdout
    number; a blend is both families' best configurations refit, their test scores blended as served."""
    summary = json.loads((plane / "f1" / "hpo" / QUERY / "summary.json").read_text())
    assert summary["settings"]["seed"] == seed
    pointer = json.loads((plane / "f1" / "best_model" / QUERY / "pointer.json").read_text())
    verdict = bool(rule_on_validation(plane, summary))
    assert summary["family_blend"]["blend_is_better"] == verdict
    served = pointer["served"]
    assert served["blend"] == verdict
    assert served["members"][0]["family"] == summary["best"]["params"]["family"]  # the winner first
    metadata = instance.get_latest_materialization_event(BEST).asset_materialization.metadata
    board = [record.data for record in metadata["leaderboard"].value.records]
    (holdout,) = [row for row in board if row["model"].startswith("served: ")]  # one holdout number
    assert holdout["rows"] == "holdout (test)" and metadata["holdout_test_auroc"].value == holdout["value"]
    if not verdict:
        assert pointer["blend"] is None and len(served["members"]) == 1
        winner = f"{summary['best']['params']['family'].upper()} trial {summary['best']['number']}"
        assert holdout["model"] == f"served: {winner} refit"
        return verdict
    blend = pointer["blend"]
    assert {member["family"] for member in served["members"]} == set(blend["members"]) == {"gnn", "gbdt"}
    assert holdout["model"].startswith("served: blend of")
    assert holdout["value"] == pytest.approx(blend["test"]["auroc"], abs=1e-3)
    stored = [stored_rows(plane, member["run_key"]) for member in blend["members"].values()]
    # each member's test score as its mid-rank among its own validation scores (what predictions serve)
    ranks = np.mean([[(np.sum(split["val"].outputs < value) + (np.sum(split["val"].outputs == value) + 1) / 2)
                      / len(split["val"].outputs) for value in split["test"].outputs] for split in stored],
                    axis=0)  # fmt: skip
    assert blend["test"]["auroc"] == pytest.approx(roc_auc_score(stored[0]["test"].labels, ranks))
    assert set(blend["test"]) == {"auroc", "auprc"} and blend["intervals"]["test"]["metric"] == "auroc"
    return verdict
