"""The hpo_study and best_model assets through Dagster, with trials as real subprocesses (Pipes).

Faults are real: trial processes SIGKILL themselves after a checkpoint (the chaos drill), and a whole run
(the dagster CLI and every process under it) is SIGKILLed mid-study.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from dagster import AssetKey, instance_for_test, materialize
from optuna.trial import TrialState

from kumo_assets.definitions import build_definitions
from resources.studies import StudyStorage
from tests.fake_db import write_fake_db
from tests.test_tasks import QUERIES

STUDY = AssetKey(["shop", "hpo_study", "big_spender"])
BEST = AssetKey(["shop", "best_model", "big_spender"])
STUDY_OP = "shop__hpo_study__big_spender"
TINY = {"max_steps_per_epoch": 4, "channels": [8, 16], "epochs": [3, 3]}


@pytest.fixture
def shop(tmp_path):
    spec_path = write_fake_db(tmp_path / "shop")
    (spec_path.parent / "queries.yaml").write_text(QUERIES)
    defs = build_definitions([spec_path], str(tmp_path / "plane"))
    for resource in defs.resources.values():
        if type(resource).__name__ == "FeatureStoreResource":
            object.__setattr__(resource, "text_encoder", "hashing")  # the sentence model is tested elsewhere
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        upstream = [a for a in defs.assets if a.key.path[1] in {"raw", "graph_store", "feature_store"} or
                    a.key == AssetKey(["shop", "training_table", "big_spender"]) or len(a.key.path) == 2]  # fmt: skip
        assert materialize(upstream, resources=defs.resources, instance=instance).success
        yield defs, instance, tmp_path


def study_config(**overrides) -> dict:
    config = {
        "mode": "fast",
        "n_trials": 4,
        "parallelism": 2,
        "device": "cpu",
        "space": TINY,
        "pruner": "none",
    }
    return {"ops": {STUDY_OP: {"config": {**config, **overrides}}}}


def run_study(defs, instance, **overrides):
    assets = [a for a in defs.assets if STUDY in a.keys]
    return materialize(
        assets, resources=defs.resources, instance=instance, run_config=study_config(**overrides)
    )


def start_cli_run(instance, tmp_path, config: dict) -> subprocess.Popen:
    """The study through the dagster CLI: the real user path, with the multiprocess executor (slots in
    parallel processes), in its own session so a test can kill the run and everything under it."""
    env = {
        **os.environ,
        "DAGSTER_HOME": instance.root_directory,
        "KUMO_GRAPH_SPEC": str(tmp_path / "shop" / "graph.yaml"),
        "KUMO_DATA_PLANE": str(tmp_path / "plane"),
    }
    command = [
        os.path.join(os.path.dirname(sys.executable), "dagster"),
        "asset",
        "materialize",
        "-m",
        "kumo_assets.definitions",
        "--select",
        STUDY.to_user_string(),
        "--config-json",
        json.dumps(config),
    ]
    return subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def load_study(tmp_path) -> optuna.Study:
    storage = StudyStorage().get_storage(str(tmp_path / "plane"))
    (name,) = optuna.study.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


def test_a_study_runs_trials_in_parallel_processes_and_continues_when_rematerialised(shop):
    defs, instance, tmp_path = shop
    run = start_cli_run(instance, tmp_path, study_config())
    output, _ = run.communicate(timeout=600)
    assert run.returncode == 0, output[-3000:]
    study = load_study(tmp_path)
    first = {t.number: (t.state, t.value) for t in study.get_trials()}
    assert sorted(state for state, _ in first.values()) == [TrialState.COMPLETE] * 4
    families = {t.user_attrs["params"]["family"] for t in study.get_trials()}
    assert families <= {"gnn", "gbdt"}
    metadata = instance.get_latest_materialization_event(STUDY).asset_materialization.metadata
    assert "| trial |" in metadata["leaderboard"].value and metadata["best_value"].value == study.best_value
    assert (
        "optimisation_history" in metadata
        and "data:image/png;base64," in metadata["optimisation_history"].value
    )
    for trial in study.get_trials():
        assert trial.user_attrs["placement"]["instance_type"] == "local" and trial.user_attrs["seconds"] > 0
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
    assert best["winning_trial"].value == study.best_trial.number
    assert "test" in best["metrics"].value


def test_a_killed_trial_process_resumes_from_its_checkpoint(shop, monkeypatch):
    defs, instance, tmp_path = shop
    monkeypatch.setenv("KUMO_CHAOS_KILL_AFTER_EPOCH", "0")
    monkeypatch.setenv("KUMO_CHAOS_DIR", str(tmp_path / "chaos"))
    assert run_study(defs, instance, n_trials=1, families=["gnn"]).success
    study = load_study(tmp_path)
    killed = sorted(path.name for path in (tmp_path / "chaos").iterdir())
    assert len(killed) == len(study.get_trials()) == 1  # the trial's first process really died (SIGKILL)...
    for trial in study.get_trials():
        assert trial.state == TrialState.COMPLETE
        assert trial.user_attrs["resumed_from"] == 0  # ...and its retry resumed from that checkpoint
        assert "attempt 1" in trial.user_attrs["failure"]


def test_a_killed_run_is_continued_by_the_next_materialisation(shop):
    defs, instance, tmp_path = shop
    config = study_config(n_trials=2, parallelism=1, families=["gnn"], space={**TINY, "epochs": [12, 12]})
    run = start_cli_run(instance, tmp_path, config)
    deadline = time.monotonic() + 240
    try:
        # Wait for one finished trial and one mid-training (it reported an epoch, so it has a checkpoint).
        while True:
            assert run.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no trial got going in time"
            trials = load_study(tmp_path).get_trials() if (tmp_path / "plane" / "optuna").exists() else []
            states = [t.state for t in trials]
            if TrialState.COMPLETE in states and any(t.state == TrialState.RUNNING and t.intermediate_values
                                                     for t in trials):  # fmt: skip
                break
            time.sleep(0.2)
    finally:
        os.killpg(run.pid, signal.SIGKILL)  # the CLI, its step processes and the trial processes
        run.communicate()
    before = {t.number: (t.state, t.value) for t in load_study(tmp_path).get_trials()}
    interrupted = [number for number, (state, _) in before.items() if state == TrialState.RUNNING]
    assert len(interrupted) == 1

    assert run_study(defs, instance, n_trials=2, parallelism=1, families=["gnn"],
                     space={**TINY, "epochs": [12, 12]}).success  # fmt: skip
    after = load_study(tmp_path).get_trials()
    for number, (state, value) in before.items():
        if state == TrialState.COMPLETE:
            assert (after[number].state, after[number].value) == (state, value)  # kept, not rerun
    assert after[interrupted[0]].state == TrialState.FAIL
    resumed = [t for t in after if t.user_attrs.get("resumes_trial") == interrupted[0]]
    assert len(resumed) == 1 and resumed[0].state == TrialState.COMPLETE
    assert (
        resumed[0].user_attrs["resumed_from"] is not None
    )  # it continued from the killed trial's checkpoint
    assert resumed[0].params == after[interrupted[0]].params
    assert len([t for t in after if t.state == TrialState.COMPLETE]) == 2
