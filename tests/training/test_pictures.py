"""Study pictures count trials and epochs in whole numbers, whatever few of them there are."""

from __future__ import annotations

import optuna
import pytest
from optuna.visualization import matplotlib as optuna_plots

from training.pictures import _integer_x, study_pictures

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def two_trial_study() -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("lr", 1e-4, 1e-2, log=True)
        for epoch in range(2):
            trial.report(0.6 + 0.1 * epoch, epoch)
        return 0.7 + 0.01 * trial.number

    study.optimize(objective, n_trials=2)
    return study


def test_trial_and_epoch_axes_have_integer_ticks():
    study = two_trial_study()
    history = _integer_x(optuna_plots.plot_optimization_history(study))
    curves = _integer_x(optuna_plots.plot_intermediate_values(study))
    for axes in (history, curves):
        ticks = [tick for tick in axes.get_xticks() if axes.get_xlim()[0] <= tick <= axes.get_xlim()[1]]
        assert ticks and all(float(tick).is_integer() for tick in ticks), ticks
    pictures = study_pictures(study, "auroc")
    assert set(pictures) == {"optimisation_history", "learning_curves"}  # importances need 3 complete trials
    assert all(png.startswith(b"\x89PNG") for png in pictures.values())
