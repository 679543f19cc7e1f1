"""Real faults during a study: trial processes SIGKILL themselves after a checkpoint (the chaos drill), and a
whole run (the dagster CLI and every process under it) is SIGKILLed mid-study."""

from __future__ import annotations

import os
import signal
import time

from optuna.trial import TrialState

from tests.support.hpo_helpers import (  # noqa: F401
    TINY,
    load_study,
    run_study,
    shop_fixture,
    start_cli_run,
    study_config,
    trials_so_far,
)


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
        assert trial.user_attrs["forked_from"]  # warm: the SIGKILL reached the client through the server


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
            trials = trials_so_far(tmp_path)
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
