"""Shared setup of the HPO tests: the fake shop database through Dagster, study config, the CLI run."""

from __future__ import annotations

import subprocess

import optuna
import pytest
from dagster import AssetKey, instance_for_test, materialize

from kumo_assets.asset_keys import stage_of
from kumo_assets.dagster_cli import materialize_command
from tests.integration.test_model_assets import shop_definitions
from training.studies import StudyStorage

STUDY = AssetKey(["shop", "big_spender", "study"])
BEST = AssetKey(["shop", "big_spender", "best_model"])
STUDY_OP = "shop__big_spender__study"
TINY = {"max_steps_per_epoch": 4, "channels": [8, 16], "epochs": [3, 3]}


def study_inputs(defs, query: str = "big_spender") -> list:
    """The assets a study of the shop's ``query`` reads: tables, both stores and its training table."""
    return [a for a in defs.assets if stage_of(a.key) in {"raw", "graph_store", "feature_store"} or
            a.key == AssetKey(["shop", query, "training_table"]) or len(a.key.path) == 2]  # fmt: skip


@pytest.fixture(name="shop")
def shop_fixture(tmp_path):
    """Definitions, a Dagster instance, and the shop's tables, stores and training table materialised."""
    defs = shop_definitions(tmp_path)
    (tmp_path / "dagster").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance:
        assert materialize(study_inputs(defs), resources=defs.resources, instance=instance).success
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
    command, env = materialize_command(
        STUDY.to_user_string(),
        config,
        instance.root_directory,
        tmp_path / "plane",
        {"KUMO_GRAPH_SPEC": str(tmp_path / "shop" / "graph.yaml")},
    )
    return subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


def trials_so_far(tmp_path) -> list[optuna.trial.FrozenTrial]:
    """The trials of the run's study, or none while the run has not created it yet (for polling)."""
    if not (tmp_path / "plane" / "optuna").exists():
        return []
    storage = StudyStorage().get_storage(str(tmp_path / "plane"))
    names = optuna.study.get_all_study_names(storage)
    return optuna.load_study(study_name=names[0], storage=storage).get_trials() if names else []


def load_study(tmp_path) -> optuna.Study:
    storage = StudyStorage().get_storage(str(tmp_path / "plane"))
    (name,) = optuna.study.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)
