"""A running study's progress, read from its storage: new epochs of running trials and newly finished trials.

Trials report each epoch's validation value to Optuna (``trial.report``) and their training losses as a user
attribute; the study step polls this while its trials run and shows it live (`kumo_assets.study_progress`).
Plain functions over an `optuna.Study`, so they are tested without Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = ["EPOCH_LOSSES", "EpochReport", "ProgressReader", "TrialFinished"]

EPOCH_LOSSES = "epoch_losses"  # trial user attribute: the training loss of each epoch so far
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True)
class EpochReport:
    """One epoch of one trial: its validation value and, for a GNN, its training loss."""

    trial: int
    family: str
    epoch: int
    value: float
    loss: float | None


@dataclass(frozen=True)
class TrialFinished:
    """A trial that ended, with the study's state after it."""

    trial: int
    family: str
    state: str
    value: float | None
    finished_trials: int
    best_value: float | None


class ProgressReader:
    """Reports each epoch and each finished trial of the trials ``owns`` selects exactly once."""

    def __init__(self, study: optuna.Study, slot_key: str) -> None:
        self.study, self.slot_key = study, slot_key
        self._epochs: set[tuple[int, int]] = set()
        self._finished: set[int] = set()

    def _owned(self, trial: FrozenTrial) -> bool:
        return trial.user_attrs.get("slot_key") == self.slot_key

    def poll(self) -> list[EpochReport | TrialFinished]:
        """What happened since the last poll, oldest first: epochs, then the trials that finished."""
        trials = self.study.get_trials(deepcopy=False)
        reports: list[EpochReport | TrialFinished] = []
        for trial in trials:
            if not self._owned(trial):
                continue
            family = trial.user_attrs.get("params", {}).get("family") or ""
            losses = trial.user_attrs.get(EPOCH_LOSSES) or []
            for epoch in sorted(trial.intermediate_values):
                if (trial.number, epoch) not in self._epochs:
                    self._epochs.add((trial.number, epoch))
                    loss = float(losses[epoch]) if epoch < len(losses) else None
                    reports.append(EpochReport(trial.number, family, epoch, float(trial.intermediate_values[epoch]),
                                               loss))  # fmt: skip
        complete = [trial.value for trial in trials if trial.state == TrialState.COMPLETE]
        best = (
            (max if self.study.direction == optuna.study.StudyDirection.MAXIMIZE else min)(complete)
            if complete
            else None
        )
        finished = sum(trial.state in FINISHED for trial in trials)
        for trial in trials:
            if self._owned(trial) and trial.state in FINISHED and trial.number not in self._finished:
                self._finished.add(trial.number)
                family = trial.user_attrs.get("params", {}).get("family") or ""
                reports.append(TrialFinished(trial.number, family, trial.state.name.lower(), trial.value, finished,
                                             best))  # fmt: skip
        return reports
