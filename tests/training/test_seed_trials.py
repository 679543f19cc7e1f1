"""Seed trials (one per model family and sampling preset) are enqueued once, before parallel slots ask."""

from __future__ import annotations

import threading
import time
from collections import Counter

import optuna
from optuna.trial import TrialState

from cluster.placement import Placement
from training.hpo import (
    StudySettings,
    enqueue_seed_trials,
    leaderboard,
    open_hpo_study,
    run_slot,
    slot_quotas,
)
from training.search_space import preset_params, search_space
from training.studies import StudyStorage

# binary classification, fast: seeds gnn/narrow2, gbdt, gnn/medium2, gnn/recent2 (layers is fixed at 2)
SPACE = search_space("binary_classification", "fast", overrides={"n_trials": 4})


def open_seeded(url: str, space=SPACE) -> optuna.Study:
    """A fresh study object on its own storage handle, as each slot process opens it."""
    return open_hpo_study(StudyStorage(url=url).get_storage(), "seeds", space, StudySettings())


def identity(params: dict) -> tuple:
    return params.get("family", "gnn"), params.get("sampling_2")


def either_family(trial, params, placement) -> dict:
    """A cheap real objective (training is tested elsewhere): the learning rate of either family."""
    value = params["gbdt_learning_rate"] if params["family"] == "gbdt" else params["lr"]
    return {"state": "complete", "value": value, "seconds": 1.0, "family": params["family"]}


def test_parallel_slots_run_each_seed_trial_exactly_once(tmp_path):
    """Two slots starting together used to both see the first seed uncovered and both run it; with the seeds
    enqueued once up front, a study of as many trials as seeds runs every family and preset once."""
    url = str(tmp_path / "journal.log")
    study = open_seeded(url)
    seeds = SPACE.seed_trials()
    assert len(seeds) == SPACE.n_trials == 4
    assert enqueue_seed_trials(study, SPACE) == seeds
    quotas = slot_quotas(study, SPACE.n_trials, parallelism=2)
    assert quotas == [2, 2]
    start, errors = threading.Barrier(len(quotas), timeout=30), []

    def work(slot: int, quota: int) -> None:
        try:
            mine = open_seeded(url)
            start.wait()
            run_slot(mine, SPACE, f"run/{slot}", quota, time.time() + 60,
                     lambda params: Placement.local_cpu(1, 2.0), either_family, {"seed": 0, "device": "cpu"}, 1,
                     log=lambda message: None)  # fmt: skip
        except Exception as error:  # surfaced below: an exception in a thread would not fail the test
            errors.append(error)

    threads = [threading.Thread(target=work, args=(slot, quota)) for slot, quota in enumerate(quotas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors and not any(thread.is_alive() for thread in threads)
    trials = open_seeded(url).get_trials()
    assert [trial.state for trial in trials] == [TrialState.COMPLETE] * 4
    ran = Counter(identity(trial.params) for trial in trials)
    assert ran == Counter(identity(seed) for seed in seeds)  # each exactly once: gbdt too
    assert set(ran.values()) == {1}
    assert all(trial.user_attrs.get("seeded") for trial in trials)


def test_a_trial_draws_the_same_parameters_whichever_slot_runs_it(tmp_path):
    """A study seed fixes each trial's random draws by the trial's number, not by the slot that asked for it.
    Before, slots racing for the queued seed trials gave a seeded GNN trial other draws (learning rate,
    channels, ...) from one run of the same study seed to the next."""
    drawn = []
    for order in ((0, 1), (1, 0)):  # which slot takes the first two queued trials
        url = str(tmp_path / f"journal-{order[0]}.log")
        enqueue_seed_trials(open_seeded(url), SPACE)
        for slot in order:
            run_slot(open_seeded(url), SPACE, f"run/{slot}", 2, time.time() + 60,
                     lambda params: Placement.local_cpu(1, 2.0), either_family, {"seed": 0, "device": "cpu"}, 1,
                     log=lambda message: None, seed=7)  # fmt: skip
        trials = open_seeded(url).get_trials()
        assert [trial.user_attrs["slot_key"] for trial in trials[:2]] == [f"run/{order[0]}"] * 2
        drawn.append({trial.number: trial.user_attrs["params"] for trial in trials})
    assert drawn[0] == drawn[1] and len(drawn[0]) == 4


def test_reopening_a_study_enqueues_no_seed_twice(tmp_path):
    """A retried run opens the study again: seeds already waiting, running, finished or failed are covered."""
    url = str(tmp_path / "journal.log")
    space = search_space("binary_classification", "fast")  # 8 trials: room for all 4 seeds
    first = enqueue_seed_trials(open_seeded(url, space), space)
    assert len(first) == 4
    assert enqueue_seed_trials(open_seeded(url, space), space) == []  # all four still WAITING
    study = open_seeded(url, space)
    done, running, failed = study.ask(), study.ask(), study.ask()  # the first three seeds, in order
    for trial in (done, running, failed):
        space.suggest(trial)
    study.tell(done, 0.5)
    study.tell(failed, state=TrialState.FAIL)  # a failed seed counts too: it is not enqueued again
    assert enqueue_seed_trials(open_seeded(url, space), space) == []
    trials = open_seeded(url, space).get_trials()
    assert len(trials) == 4 and sum(trial.state == TrialState.WAITING for trial in trials) == 1
    assert Counter(identity(trial.system_attrs["fixed_params"]) for trial in trials) == Counter(
        identity(seed) for seed in space.seed_trials()
    )


def test_a_budget_smaller_than_the_seeds_takes_them_in_order(tmp_path):
    """n_trials below the number of seeds enqueues the first ones (families alternate, so GBDT is among two);
    a larger budget on the same study later enqueues the rest."""
    url = str(tmp_path / "journal.log")
    small = search_space("binary_classification", "fast", overrides={"n_trials": 2})
    seeds = small.seed_trials()
    assert enqueue_seed_trials(open_seeded(url, small), small) == seeds[:2]
    assert [seed["family"] for seed in seeds[:2]] == ["gnn", "gbdt"]
    assert enqueue_seed_trials(open_seeded(url, small), small) == []
    assert enqueue_seed_trials(open_seeded(url, SPACE), SPACE) == seeds[2:]
    assert len(open_seeded(url, SPACE).get_trials()) == 4


def test_queued_seed_trials_show_their_family_on_the_leaderboard(tmp_path):
    """Seeds enqueued but not yet asked for (the study's deadline hit first) are listed as waiting with the
    family and draws they were enqueued with, not as rows without a family."""
    study = open_seeded(str(tmp_path / "journal.log"))
    seeds = enqueue_seed_trials(study, SPACE)
    rows = leaderboard(study)
    assert [row["state"] for row in rows] == ["waiting"] * len(seeds)
    assert (
        [row["family"] for row in rows] == [seed["family"] for seed in seeds] == ["gnn", "gbdt", "gnn", "gnn"]
    )
    # A GNN seed's preset shows as what a finished trial records (batch, fanouts, strategy), so the queued
    # GNN rows differ; the bare preset name is not a parameter any finished row has.
    gnn = [(row["params"], seed) for row, seed in zip(rows, seeds, strict=True) if seed["family"] == "gnn"]
    assert [params for params, _ in gnn] == [
        {"family": "gnn", "layers": 2, **preset_params(seed["sampling_2"])} for _, seed in gnn
    ]
    assert len({str(params) for params, _ in gnn}) == len(gnn) == 3
