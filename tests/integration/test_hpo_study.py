"""The hpo_study and best_model assets through Dagster, with trials as real subprocesses (Pipes)."""

from __future__ import annotations

import itertools
import json
import math

import optuna
import pytest
from dagster import materialize
from optuna.trial import TrialState

from kumo_assets.webserver import read_picture
from stores.data_plane import DataPlane
from tests.support.hpo_helpers import (  # noqa: F401 (the shop fixture)
    BEST,
    STUDY,
    load_study,
    run_study,
    shop_fixture,
    start_cli_run,
    study_config,
)
from training.studies import StudyStorage
from training.study_summary import read_study_summary, trials_within_noise


def test_a_study_runs_trials_in_parallel_processes_and_continues_when_rematerialised(shop):
    defs, instance, tmp_path = shop
    run = start_cli_run(instance, tmp_path, study_config())
    output, _ = run.communicate(timeout=600)
    assert run.returncode == 0, output[-3000:]
    study = load_study(tmp_path)
    first = {t.number: (t.state, t.value) for t in study.get_trials()}
    assert sorted(state for state, _ in first.values()) == [TrialState.COMPLETE] * 4
    families = {t.user_attrs["params"]["family"] for t in study.get_trials()}
    assert families == {"gnn", "gbdt"}  # the seeded first trials reach both families in a 4-trial study
    metadata = instance.get_latest_materialization_event(STUDY).asset_materialization.metadata
    board = metadata["leaderboard"].value.records
    assert sorted(record.data["trial"] for record in board) == [0, 1, 2, 3]
    assert metadata["best_val_auroc"].value == pytest.approx(study.best_value, abs=1e-4)
    # pictures are short inline markdown pointing at the PNG the webserver serves from the data plane
    picture = metadata["optimisation_history"].value
    assert len(picture) < 1000 and picture.startswith("![optimisation history](/kumo/pictures/shop/pictures/")
    png = read_picture(
        DataPlane(root=str(tmp_path / "plane")), picture.split("/kumo/pictures/")[1].rstrip(")")
    )
    assert png is not None and png.startswith(b"\x89PNG")
    # live progress: every epoch of every trial, and every finished trial, was observed on the study asset
    observed = [
        record.asset_observation.metadata for record in instance.fetch_observations(STUDY, 1000).records
    ]
    epochs = [metadata for metadata in observed if "epoch_val_auroc" in metadata]
    assert len(epochs) == sum(len(trial.intermediate_values) for trial in study.get_trials())
    finished = sorted(m["finished_trials"].value for m in observed if "finished_trials" in m)
    assert len(finished) == 4 and finished[-1] == 4  # one per trial (two ending in one poll share a count)
    boards = [m["leaderboard"].value.records for m in observed if "leaderboard" in m]  # newest first
    assert len(boards) == 4 and sum(r.data["state"] == "complete" for r in boards[0]) == 4
    assert all("epoch_train_loss" in metadata for metadata in epochs if "(gnn)" in metadata["progress"].value)
    # holdout discipline: neither the study's storage nor a trial's own summary holds a test metric
    for trial in study.get_trials():
        assert set(trial.user_attrs["metrics"]) == {"val"}, trial.user_attrs["metrics"]
        run = json.loads((tmp_path / "plane").glob(f"shop/models/*/{trial.user_attrs['run_key']}/summary.json")
                         .__next__().read_text())  # fmt: skip
        assert set(run["metrics"]) == set(run["intervals"]) == {"val"}
    for trial in study.get_trials():
        assert trial.user_attrs["placement"]["instance_type"] == "local" and trial.user_attrs["seconds"] > 0
        interval = trial.user_attrs["val_interval"]  # the trial's validation value, resampled by entity
        assert interval["estimate"] == trial.value and interval["groups"] > 1
    best_interval = study.best_trial.user_attrs["val_interval"]
    if not math.isnan(best_interval["low"]):
        inside = sum(best_interval["low"] <= t.value <= best_interval["high"] for t in study.get_trials())
        assert metadata["validation_noise"].value.startswith(f"{inside} of 4 complete trials")
    # every run keeps its scored rows; with both families complete the study reports their blend
    summary = json.loads(next((tmp_path / "plane").glob("shop/hpo/*/summary.json")).read_text())
    for trial in study.get_trials():
        assert next((tmp_path / "plane").glob(f"shop/models/*/{trial.user_attrs['run_key']}/scored.npz"))
    if families == {"gnn", "gbdt"}:
        blend = summary["family_blend"]
        assert set(blend["trials"]) == families and len(blend["members"]) == 2
        assert blend["metric"] == summary["metric"] and 0.0 <= blend["blend"] <= 1.0
        assert metadata["family_blend"].value.startswith(f"validation {summary['metric']}:")
    else:
        assert summary["family_blend"] is None
    servers = {t.user_attrs.get("forked_from") for t in study.get_trials()}
    assert len(servers) == 1 and None not in servers  # every trial forked from the run's one warm server
    # Two slots ran at once: some trial started before another one finished.
    spans = sorted((t.user_attrs["started_at"], t.user_attrs["finished_at"]) for t in study.get_trials())
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))

    assert run_study(defs, instance, n_trials=5).success  # a larger budget: one more trial, none rerun
    study = load_study(tmp_path)
    assert len(study.get_trials()) == 5
    assert {t.number: (t.state, t.value) for t in study.get_trials() if t.number in first} == first

    assets = [a for a in defs.assets if BEST in a.keys]
    assert materialize(assets, resources=defs.resources, instance=instance).success
    best = instance.get_latest_materialization_event(BEST).asset_materialization.metadata
    chosen = best["leaderboard"].value.records[0].data
    family = study.best_trial.user_attrs["params"]["family"].upper()
    assert (
        chosen["model"] == f"chosen: {family} trial {study.best_trial.number}"
        and chosen["rows"] == "validation"
    )
    assert best["chosen_val_auroc"].value == pytest.approx(study.best_value, abs=1e-4)
    # the chosen trial's validation rows drawn as ROC, precision-recall and calibration, before the refit
    assert {"roc_curve", "precision_recall", "calibration"} <= set(best)
    check_blend_off_and_train_rows(defs, instance, tmp_path, assets)


def check_blend_off_and_train_rows(defs, instance, tmp_path, assets) -> None:
    """best_model serves what the study's blend verdict says (the rule itself, in both branches and with the
    blend's refit, is checked on real F1 trials in test_serving_rule.py); ``blend: false`` serves the winner
    alone and ``protocol: train_rows`` retrains it on the training rows."""
    plane = tmp_path / "plane"
    summary = json.loads(next(plane.glob("shop/hpo/*/summary.json")).read_text())
    winner = summary["best"]["params"]["family"]
    served = json.loads(next(plane.glob("shop/best_model/*/pointer.json")).read_text())["served"]
    assert served["blend"] == summary["family_blend"]["blend_is_better"]
    assert served["members"][0]["family"] == winner
    unblended = {"ops": {"shop__big_spender__best_model": {"config": {"blend": False}}}}
    assert materialize(assets, resources=defs.resources, instance=instance, run_config=unblended).success
    assert json.loads(next(plane.glob("shop/best_model/*/pointer.json")).read_text())["blend"] is None
    board = [r.data for r in instance.get_latest_materialization_event(BEST).asset_materialization.metadata[
        "leaderboard"].value.records]  # fmt: skip
    assert [row["model"] for row in board if row["model"].startswith("served: ")] == [
        f"served: {winner.upper()} trial {summary['best']['number']} refit"]  # fmt: skip

    # RelBench's protocol: the chosen trial retrained on the training rows only, its holdout labelled so
    relbench = {
        "ops": {"shop__big_spender__best_model": {"config": {"blend": False, "protocol": "train_rows"}}}
    }
    assert materialize(assets, resources=defs.resources, instance=instance, run_config=relbench).success
    metadata = instance.get_latest_materialization_event(BEST).asset_materialization.metadata
    (served,) = [
        r.data for r in metadata["leaderboard"].value.records if r.data["model"].startswith("served: ")
    ]
    assert (
        served["model"]
        == f"served: {winner.upper()} trial {summary['best']['number']} retrained on the training rows"
    )
    assert served["note"].startswith("trained on the training rows only (RelBench's protocol), scored once")
    assert "RelBench's protocol" in metadata["protocol"].value


def test_trials_within_noise_counts_complete_trials_inside_the_winners_interval():
    board = [{"state": "complete", "value": value} for value in (0.80, 0.78, 0.74, 0.70)]
    board.append({"state": "pruned", "value": 0.79})
    interval = {"low": 0.75, "high": 0.84, "groups": 42, "estimate": 0.80}
    summary = {"best": {"val_interval": interval}, "leaderboard": board}
    assert trials_within_noise(summary) == {
        "trials": 2,
        "complete": 4,
        "low": 0.75,
        "high": 0.84,
        "entities": 42,
    }
    undefined = {"best": {"val_interval": {**interval, "low": float("nan")}}, "leaderboard": board}
    assert trials_within_noise(undefined) is None
    assert trials_within_noise({"best": None, "leaderboard": []}) is None


def test_a_study_with_both_families_reports_the_blend_of_their_best_trials(tmp_path):
    """family_blend on a real Optuna study and data plane: the best trial of each family (not the first), their
    validation rows read back from the runs' scored.npz, and the blend's verdict."""
    from types import SimpleNamespace

    import numpy as np

    from models.blending import scored_rows_bytes
    from models.uncertainty import ScoredRows
    from stores.data_plane import DataPlane
    from training.study_summary import family_blend

    plane = DataPlane(root=str(tmp_path / "plane"))
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=600), rng.normal(size=600)
    labels, groups = (u + v > 0).astype(np.float64), np.arange(600) // 3
    outputs = {"weak-gnn": rng.random(600), "gnn": 1 / (1 + np.exp(-u)), "gbdt": 1 / (1 + np.exp(-v))}
    study = optuna.create_study(direction="maximize")
    for run_key, family, value in (("weak-gnn", "gnn", 0.55), ("gnn", "gnn", 0.75), ("gbdt", "gbdt", 0.74)):
        rows = ScoredRows(labels, outputs[run_key], groups)
        plane.put_bytes(
            scored_rows_bytes({"val": rows, "test": rows}), "shop", "models", "q", run_key, "scored.npz"
        )
        trial = study.ask()
        trial.set_user_attr("params", {"family": family})
        trial.set_user_attr("run_key", run_key)
        study.tell(trial, value)
    context = SimpleNamespace(task_type="binary_classification", space=SimpleNamespace(metric="auroc"),
                              spec=SimpleNamespace(graph_name="shop"), query=SimpleNamespace(name="q"))  # fmt: skip
    blend = family_blend(context, plane, study.get_trials())
    assert blend["trials"] == {"gbdt": 2, "gnn": 1}
    assert blend["blend_is_better"] and blend["blend"] > max(blend["members"].values())
    ranked = SimpleNamespace(**{**vars(context), "task_type": "link_prediction"})
    assert family_blend(ranked, plane, study.get_trials()) is None
    assert family_blend(context, plane, study.get_trials()[:2]) is None  # one family only


def test_a_study_with_several_study_seeds_reports_each_seeds_best_and_refits_the_one_that_validates_best(
    shop,
):
    """n_study_seeds: one materialisation searches with seeds 3 and 4 (two studies, each its own trials), keeps
    each seed's summary, and best_model refits the seed whose best trial validates best."""
    defs, instance, tmp_path = shop
    # a study that could not run a trial is refused before it writes anything
    study_assets = [a for a in defs.assets if STUDY in a.keys]
    refused = materialize(study_assets, resources=defs.resources, instance=instance, raise_on_error=False,
                          run_config=study_config(n_trials=0))  # fmt: skip
    assert not refused.success
    (failure,) = [event for event in refused.all_events if event.is_step_failure]
    assert "n_trials is 0; set it to 1 or more" in failure.step_failure_data.error.to_string()
    assert not (tmp_path / "plane" / "optuna").exists() and not list(tmp_path.glob("plane/shop/hpo"))
    assert run_study(defs, instance, n_trials=2, seed=3, n_study_seeds=2, families=["gnn"]).success
    storage = StudyStorage().get_storage(str(tmp_path / "plane"))
    names = optuna.study.get_all_study_names(storage)
    assert len(names) == 2
    studies = [optuna.load_study(study_name=name, storage=storage) for name in names]
    assert all(len(study.get_trials(states=(TrialState.COMPLETE,))) == 2 for study in studies)
    plane = DataPlane(root=str(tmp_path / "plane"))
    seeds = {seed: read_study_summary(plane, "shop", "big_spender", seed) for seed in (3, 4)}
    assert {summary["study_name"] for summary in seeds.values()} == set(names)
    assert {summary["settings"]["seed"] for summary in seeds.values()} == {3, 4}
    summary = read_study_summary(plane, "shop", "big_spender")
    report = summary["study_seeds"]
    by_seed = {row["seed"]: row["best_value"] for row in report["seeds"]}
    assert by_seed == {seed: seeds[seed]["best"]["value"] for seed in (3, 4)}
    assert report["chosen_seed"] == max(by_seed, key=by_seed.get)  # AUROC: higher is better
    assert summary["study_name"] == seeds[report["chosen_seed"]]["study_name"]
    assert report["mean"] == pytest.approx(sum(by_seed.values()) / 2)
    metadata = instance.get_latest_materialization_event(STUDY).asset_materialization.metadata
    assert [record.data["seed"] for record in metadata["study_seeds"].value.records] == [3, 4]
    assert "over 2 study seeds" in metadata["over_study_seeds"].value

    assets = [a for a in defs.assets if BEST in a.keys]
    assert materialize(assets, resources=defs.resources, instance=instance).success
    best = instance.get_latest_materialization_event(BEST).asset_materialization.metadata
    assert best["study"].value == summary["study_name"]
    # the serving rule's one-family branch, on real trials: no family blend, the winner alone is served
    pointer = json.loads(next((tmp_path / "plane").glob("shop/best_model/*/pointer.json")).read_text())
    assert summary["family_blend"] is None and pointer["blend"] is None
    assert pointer["served"]["blend"] is False and [m["family"] for m in pointer["served"]["members"]] == [
        "gnn"
    ]
