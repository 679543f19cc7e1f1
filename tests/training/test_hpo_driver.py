"""The HPO driver without Dagster: budgets split over slots, retries, replacements, orphans, leaderboard."""

from __future__ import annotations

import time

import optuna
import pytest
from optuna.trial import TrialState

from cluster.placement import Placement
from training.hpo import (
    MAX_FAILED_IN_A_ROW,
    MAX_UNPLACEABLE_IN_A_ROW,
    SlotOutcome,
    StudySettings,
    TrialsKeepFailing,
    enqueue_seed_trials,
    leaderboard,
    open_hpo_study,
    recover_orphaned_trials,
    run_slot,
    slot_quotas,
    study_name,
    uncovered_seed_trials,
)
from training.search_space import search_space
from training.studies import StudyStorage

SPACE = search_space("regression", "fast", families=("gnn",))
PLACEMENT = Placement.local_cpu(1, 2.0)


@pytest.fixture
def study(tmp_path):
    storage = StudyStorage(url=str(tmp_path / "journal.log")).get_storage()
    return open_hpo_study(storage, "s", SPACE, StudySettings())


def objective(trial, params, placement) -> dict:
    """A real, cheap objective of the parameters (a stand-in for training, whose launch is tested elsewhere)."""
    return {"state": "complete", "value": abs(params["lr"] - 0.004) * 100 + params["channels"] / 1000,
            "seconds": 1.0, "family": params["family"]}  # fmt: skip


def slot(study, quota, launch=objective, deadline=None, retries=1, key="run/0"):
    return run_slot(study, SPACE, key, quota, deadline or time.time() + 60, lambda params: PLACEMENT, launch,
                    {"seed": 0, "device": "cpu"}, retries, log=lambda message: None)  # fmt: skip


def test_quotas_split_the_remaining_budget(study):
    assert slot_quotas(study, 10, 4) == [3, 3, 2, 2]
    assert slot_quotas(study, 2, 4) == [1, 1]
    slot(study, 3)
    assert slot_quotas(study, 10, 4) == [2, 2, 2, 1]
    assert slot_quotas(study, 3, 4) == []


def test_a_slot_finishes_its_quota_and_records_each_trial(study):
    outcome = slot(study, 4)
    trials = study.get_trials()
    assert len(outcome.finished) == 4 and [t.state for t in trials] == [TrialState.COMPLETE] * 4
    for trial in trials:
        assert (
            trial.user_attrs["params"]["seed"] == 0
            and trial.user_attrs["placement"]["instance_type"] == "local"
        )
        assert trial.value == pytest.approx(objective(None, trial.user_attrs["params"], None)["value"])
    board = leaderboard(study)
    assert [row["value"] for row in board] == sorted(t.value for t in trials)  # minimise: best first
    assert board[0]["number"] == study.best_trial.number


def test_parallel_slots_propose_different_trials(study):
    slot(study, 3, key="run/0")
    slot(
        study, 3, key="run/1"
    )  # a second slot process with the study's seed must not repeat the first's draws
    proposals = [tuple(sorted(t.params.items())) for t in study.get_trials()]
    assert len(set(proposals)) == len(proposals)


def test_a_failing_trial_is_retried_then_replaced(study):
    attempts: dict[int, int] = {}

    def flaky(trial, params, placement):
        attempts[trial.number] = attempts.get(trial.number, 0) + 1
        if trial.number == 0 and attempts[0] == 1:
            raise RuntimeError("killed")  # first attempt of trial 0 dies, its retry succeeds
        if trial.number == 1:
            raise RuntimeError("always broken")
        return objective(trial, params, placement)

    outcome = slot(study, 3, flaky, retries=1)
    states = {t.number: t.state for t in study.get_trials()}
    assert attempts[0] == 2 and states[0] == TrialState.COMPLETE
    assert attempts[1] == 2 and states[1] == TrialState.FAIL and outcome.failed == [1]
    assert len(outcome.finished) == 3  # the failed trial was replaced
    assert "always broken" in study.get_trials()[1].user_attrs["failure"]


def test_a_slot_stops_when_every_trial_fails(study):
    launched = []

    def broken(trial, params, placement):
        launched.append(trial.number)
        raise ImportError("No module named 'torch_geometric'")  # every trial dies at start

    with pytest.raises(
        TrialsKeepFailing, match=r"3 trials in a row failed .*No module named 'torch_geometric'"
    ):
        slot(study, 8, broken, retries=1)
    assert sorted(set(launched)) == [0, 1, 2] and len(launched) == 6  # 3 trials, each tried twice, then stop
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL] * MAX_FAILED_IN_A_ROW


def test_pruned_and_valueless_results_get_their_states(study):
    results = iter([{"state": "pruned", "value": 0.5, "seconds": 1.0},
                    {"state": "complete", "value": float("nan"), "seconds": 1.0}])  # fmt: skip
    slot(study, 2, lambda trial, params, placement: next(results), retries=0)
    states = [t.state for t in study.get_trials()]
    assert states[0] == TrialState.PRUNED and states[1] == TrialState.FAIL


def test_no_trial_starts_after_the_deadline(study):
    outcome = slot(study, 3, deadline=time.time() - 1)
    assert outcome.stopped_by_deadline and not study.get_trials()


def test_orphaned_trials_are_failed_and_resumed_with_the_same_parameters(study):
    trial = study.ask()
    params = {**SPACE.suggest(trial), "seed": 0, "device": "cpu"}
    trial.set_user_attr("params", params)
    trial.set_user_attr("dagster_run_id", "dead-run")
    alive = study.ask()
    alive.set_user_attr("dagster_run_id", "live-run")
    assert recover_orphaned_trials(study, lambda run_id: run_id == "live-run") == [trial.number]
    states = {t.number: t.state for t in study.get_trials()}
    assert states[trial.number] == TrialState.FAIL and states[alive.number] == TrialState.RUNNING
    slot(study, 1)
    resumed = study.get_trials()[-1]
    assert resumed.user_attrs["resumes_trial"] == trial.number and resumed.user_attrs["params"] == params


def test_a_retried_slot_resumes_its_own_running_trial(study):
    trial = study.ask()
    params = {**SPACE.suggest(trial), "seed": 0, "device": "cpu"}
    trial.set_user_attr("params", params)
    trial.set_user_attr("slot_key", "run/0")
    outcome = slot(study, 1, key="run/0")
    assert outcome.resumed == [trial.number] and study.get_trials()[0].state == TrialState.COMPLETE
    assert len(study.get_trials()) == 1


def test_study_names_are_stable_and_follow_the_data():
    settings = StudySettings()
    first = study_name("f1", "dnf", "hash-a", SPACE, settings)
    assert first == study_name("f1", "dnf", "hash-a", SPACE, settings)
    assert first != study_name("f1", "dnf", "hash-b", SPACE, settings)
    assert first != study_name("f1", "dnf", "hash-a", SPACE, StudySettings(observe_until="2010-01-01"))
    assert first.startswith("f1.dnf.fast-")
    bigger = search_space(
        "regression", "fast", families=("gnn",), overrides={"n_trials": 50, "timeout_minutes": 9}
    )
    assert study_name("f1", "dnf", "hash-a", bigger, settings) == first  # a larger budget continues the study


def test_reopening_a_study_keeps_its_trials(tmp_path):
    storage = StudyStorage(url=str(tmp_path / "journal.log"))
    slot(open_hpo_study(storage.get_storage(), "s", SPACE, StudySettings()), 2)
    again = open_hpo_study(storage.get_storage(), "s", SPACE, StudySettings())
    assert len(again.get_trials(states=(TrialState.COMPLETE,))) == 2
    with pytest.raises(ValueError, match="unknown pruner"):
        open_hpo_study(storage.get_storage(), "t", SPACE, StudySettings(pruner="hyperband!"))
    assert optuna.study.get_all_study_names(storage.get_storage()) == ["s"]


def test_a_new_study_starts_with_each_family_and_sampling_preset(tmp_path):
    space = search_space("binary_classification", "fast")
    storage = StudyStorage(url=str(tmp_path / "journal.log")).get_storage()
    study = open_hpo_study(storage, "seeded", space, StudySettings())
    enqueue_seed_trials(study, space)

    def either_family(trial, params, placement) -> dict:
        value = params["gbdt_learning_rate"] if params["family"] == "gbdt" else params["lr"]
        return {"state": "complete", "value": value, "seconds": 1.0, "family": params["family"]}

    run_slot(study, space, "run/0", 4, time.time() + 60, lambda params: PLACEMENT, either_family,
             {"seed": 0, "device": "cpu"}, 1, log=lambda message: None)  # fmt: skip
    assert all(
        trial.state == TrialState.COMPLETE and trial.user_attrs["seeded"] for trial in study.get_trials()
    )
    first = [trial.user_attrs["params"] for trial in study.get_trials()]
    assert {params["family"] for params in first} == {"gnn", "gbdt"}
    (gbdt,) = [params for params in first if params["family"] == "gbdt"]
    defaults = (gbdt["gbdt_trees"], gbdt["gbdt_leaves"], gbdt["gbdt_learning_rate"])
    assert defaults == (400, 31, 0.03)  # the space's most trees, the model's own leaves and rate
    gnn = [params for params in first if params["family"] == "gnn"]
    assert (
        len({(p["batch_size"], tuple(p["fanouts"]), p["sampling_strategy"]) for p in gnn}) == 3
    )  # 3 presets
    # reopening a study that has trials seeds nothing more
    again = open_hpo_study(storage, "seeded", space, StudySettings())
    assert enqueue_seed_trials(again, space) == [] and len(again.get_trials()) == 4


def misfit_study(tmp_path) -> tuple[optuna.Study, SlotOutcome, list[str]]:
    """A slot of 3 trials with the real provisioner on a machine (2.5 GiB) that holds the space's GNNs but not
    its GBDT; returns the study, the slot's outcome and the families it launched."""
    from cluster.provisioner import NodeProvisioner
    from tests.cluster.test_provisioner import shop

    space = search_space("binary_classification", "fast")
    storage = StudyStorage(url=str(tmp_path / "journal.log")).get_storage()
    study = open_hpo_study(storage, "misfit", space, StudySettings())
    enqueue_seed_trials(study, space)
    provisioner, stats = NodeProvisioner(), shop()
    launched = []

    def train(trial, params, placement) -> dict:
        launched.append(params["family"])
        return {"state": "complete", "value": params["lr"], "seconds": 1.0, "family": "gnn"}

    outcome = run_slot(study, space, "run/0", 3, time.time() + 60,
                       lambda params: provisioner.place_local(params, stats, cpu_count=2, memory_gib=2.5),
                       train, {"seed": 0, "device": "cpu"}, 1, log=lambda message: None)  # fmt: skip
    return study, outcome, launched


def test_a_trial_that_fits_nowhere_fails_alone_and_the_slot_goes_on(tmp_path):
    """Each GBDT trial fails without running, with the provisioner's reason and fix, and the slot finishes its
    quota with GNNs; the leaderboard says why each failed trial failed."""
    study, outcome, launched = misfit_study(tmp_path)
    assert launched == ["gnn"] * 3 and len(outcome.finished) == 3  # no GBDT was launched
    misfits = [trial for trial in study.get_trials() if trial.state == TrialState.FAIL]
    assert misfits and [t.number for t in misfits] == outcome.unplaceable  # the seeded GBDT among them
    for trial in misfits:
        assert trial.user_attrs["params"]["family"] == "gbdt" and trial.user_attrs["unplaceable"]
        assert trial.user_attrs["failure"].startswith("does not fit: trial gbdt(")
        assert "run fewer trials at once" in trial.user_attrs["failure"]
        assert "placement" not in trial.user_attrs
    seeded = [trial for trial in misfits if trial.user_attrs.get("seeded", False)]
    assert len(seeded) == 1  # the GBDT seed is not enqueued again after it failed
    board = {row["number"]: row for row in leaderboard(study)}
    assert all(board[t.number]["failure"] == t.user_attrs["failure"] for t in misfits)
    assert all(board[number]["failure"] is None for number in outcome.finished)


def test_a_slot_stops_when_nothing_the_space_draws_fits(study):
    from cluster.provisioner import NodeProvisioner
    from tests.cluster.test_provisioner import shop

    with pytest.raises(TrialsKeepFailing, match=r"8 trials in a row fit nowhere .*offers 0.1 GiB"):
        run_slot(study, SPACE, "run/0", 3, time.time() + 60,
                 lambda params: NodeProvisioner().place_local(params, shop(), cpu_count=2, memory_gib=0.1),
                 objective, {"seed": 0, "device": "cpu"}, 1, log=lambda message: None)  # fmt: skip
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL] * MAX_UNPLACEABLE_IN_A_ROW


def test_a_seed_trial_is_covered_by_any_trial_of_its_family_and_preset(tmp_path):
    """Seeding asks for one trial per family and preset, not for the seed's exact draws: a GBDT trial with
    other trees covers the GBDT seed, so reopening an older study enqueues nothing for it."""
    space = search_space("binary_classification", "fast")
    storage = StudyStorage(url=str(tmp_path / "journal.log")).get_storage()
    study = open_hpo_study(storage, "covered", space, StudySettings())
    study.enqueue_trial({"family": "gbdt", "gbdt_trees": 150, "gbdt_leaves": 20, "gbdt_learning_rate": 0.1})
    trial = study.ask()
    space.suggest(trial)
    study.tell(trial, 0.7)
    assert [seed["family"] for seed in uncovered_seed_trials(study, space)] == ["gnn"] * (
        len(space.seed_trials()) - 1
    )
    assert [seed["family"] for seed in space.seed_trials()].count("gbdt") == 1


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"n_trials": 0}, r"n_trials is 0; set it to 1 or more"),
        ({"parallelism": -1}, r"parallelism is -1; set it to 1 or more"),
        ({"timeout_minutes": 0.0}, r"timeout_minutes is 0.0; set it to 1 or more"),
        ({"trial_retries": -2}, r"trial_retries is -2; set it to 0 or more"),
    ],
)
def test_a_study_that_cannot_run_a_trial_is_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        StudySettings(**settings)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"epoch": [2, 2]}, r"unknown search-space keys \['epoch'\] .*known: .*'epochs'"),
        ({"epochs": [0, 2]}, r"search space `epochs` is \[0, 2\]; every value must be a whole number >= 1"),
        ({"gbdt_trees": [100, -5]}, r"`gbdt_trees` is \[100, -5\]"),
        ({"max_steps_per_epoch": 0}, r"`max_steps_per_epoch` is 0; set it above 0"),
    ],
)
def test_a_search_space_with_unknown_or_impossible_keys_is_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        search_space("binary_classification", "fast", overrides=overrides)
