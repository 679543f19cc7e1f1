"""The HPO driver: an Optuna study per query, worked by parallel slots that ask, launch and tell trials.

Plain functions (no Dagster): `kumo_assets.hpo_assets` wires them into the ``hpo_study`` asset. Each slot
asks the study for a trial only when it is free, so TPE sees every finished trial before proposing the next
(proposing all trials up front would leave it blind); only the seed trials, one per family and sampling
preset, are enqueued up front, once, before any slot starts (`enqueue_seed_trials`). A trial that dies is
launched again and resumes from its checkpoint; after ``trial_retries`` more failures it is marked failed
and the slot asks for a replacement. A trial that fits no placement (`cluster.provisioner`) fails at once,
alone, with the provisioner's reason. Trials left running by a killed Dagster run are failed and re-enqueued
with the same parameters, so the next materialisation resumes them from their checkpoints; completed trials
are never rerun.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from cluster.placement import Placement
from cluster.provisioner import ProvisioningError
from training.search_space import SearchSpace, preset_params
from training.studies import FINISHED_STATES, claim_trial, trial_owner_alive

__all__ = [
    "MAX_FAILED_IN_A_ROW",
    "MAX_UNPLACEABLE_IN_A_ROW",
    "SlotOutcome",
    "StudySettings",
    "TrialsKeepFailing",
    "enqueue_seed_trials",
    "leaderboard",
    "open_hpo_study",
    "recover_orphaned_trials",
    "run_slot",
    "slot_quotas",
    "study_name",
    "uncovered_seed_trials",
]


@dataclass(frozen=True)
class StudySettings:
    """How a study searches: mode (space and default budgets), budgets, parallelism, the data regime."""

    mode: str = "fast"
    n_trials: int | None = None  # default: the mode's
    timeout_minutes: float | None = None  # default: the mode's; no trial starts after it
    parallelism: int = 2
    families: tuple[str, ...] = ()
    seed: int = 0
    pruner: str = "median"  # median | halving | none
    trial_retries: int = 1
    observe_until: str | None = None
    simulate_staleness: bool = False
    # each trial draws fresh or stale training, all selected on one frozen validation view (needs
    # observe_until); overrides simulate_staleness
    search_staleness: bool = False
    device: str = "auto"
    # trials on one sampling preset reuse each other's minibatches, GBDT trials their features (node-local cache)
    share_batches: bool = True

    def __post_init__(self) -> None:
        """A budget that cannot run a trial is an error, not an empty study that "succeeds"."""
        hints = {"n_trials": "or leave it out for the mode's default", "timeout_minutes": "or leave it out for the "
                 "mode's default", "parallelism": "trials run at once"}  # fmt: skip
        for name, hint in hints.items():
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"study config: {name} is {value}; set it to 1 or more ({hint})")
        if self.trial_retries < 0:
            raise ValueError(f"study config: trial_retries is {self.trial_retries}; set it to 0 or more")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def study_name(graph: str, query: str, inputs: str, space: SearchSpace, settings: StudySettings) -> str:
    """Stable across re-materialisations of the same question on the same data; new when either changes.
    Budgets are not part of it: raising ``n_trials`` or the timeout continues the same study."""
    searched = {
        name: value for name, value in space.to_dict().items() if name not in {"n_trials", "timeout_minutes"}
    }
    identity = json.dumps({"inputs": inputs, "space": searched, "seed": settings.seed,
                           "observe_until": settings.observe_until,
                           "simulate_staleness": settings.simulate_staleness,
                           "search_staleness": settings.search_staleness}, sort_keys=True, default=str)  # fmt: skip
    return f"{graph}.{query}.{space.mode}-{hashlib.sha256(identity.encode()).hexdigest()[:10]}"


def tpe_sampler(seed: int, n_trials: int) -> optuna.samplers.TPESampler:
    """TPE: multivariate and grouped (conditional family branches), constant liar for running trials."""
    with warnings.catch_warnings():  # "experimental" in name only; Optuna's docs advise these options
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                          n_startup_trials=min(10, max(2, n_trials // 3)))  # fmt: skip


def proposal_seed(seed: int, trial_number: int) -> int:
    """The sampler seed of one trial's draws: by the study seed and the trial's number, so a trial draws the
    same whichever slot runs it (slots race for queued trials), and parallel slots, each with a sampler of its
    own, never share their random start-up draws."""
    digest = hashlib.sha256(f"{seed}|trial {trial_number}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


PRUNERS = {
    # Not before a trial's second epoch, nor before 4 trials finished: with (2, 0) an F1 position study
    # pruned 10 of 12 trials on their first, noisy epoch.
    "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1),
    "halving": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
    "none": optuna.pruners.NopPruner,
}


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """The study's pruner by name. Optuna does not store pruners: every process that asks ``should_prune``
    (the trial processes) must build the same one, or it silently gets Optuna's default median pruner."""
    if name not in PRUNERS:
        raise ValueError(f"unknown pruner {name!r}; choose one of {sorted(PRUNERS)}")
    return PRUNERS[name]()


def open_hpo_study(
    storage: optuna.storages.BaseStorage, name: str, space: SearchSpace, settings: StudySettings
):
    """Create or load the study: TPE (multivariate, constant liar for running trials) and the pruner."""
    sampler = tpe_sampler(settings.seed, space.n_trials)
    study = optuna.create_study(storage=storage, study_name=name, direction=space.direction, sampler=sampler,
                                pruner=make_pruner(settings.pruner), load_if_exists=True)  # fmt: skip
    study.set_user_attr("metric", space.metric)
    study.set_user_attr("mode", space.mode)
    return study


SEED_IDENTITY = ("family", "layers")  # with sampling_<layers>: what a seed trial must cover


def _covers(trial: optuna.trial.FrozenTrial, identity: Mapping[str, Any]) -> bool:
    """Whether ``trial`` (any state; a WAITING one by its enqueued parameters) has the seed's family and preset.
    A draw fixed by a one-option space is not recorded, so a missing name matches; a trial with no draws
    yet covers nothing."""
    known = {**trial.system_attrs.get("fixed_params", {}), **trial.params}
    return bool(known) and all(known.get(name, value) == value for name, value in identity.items())


def uncovered_seed_trials(study: optuna.Study, space: SearchSpace) -> list[dict[str, Any]]:
    """The space's seed trials (`SearchSpace.seed_trials`, in its order) that no trial of the study covers:
    one of the same family (and GNN layers and sampling preset), whatever its other draws."""
    trials = study.get_trials(deepcopy=False)
    uncovered = []
    for seed in space.seed_trials():
        identity = {name: value for name, value in seed.items()
                    if name in SEED_IDENTITY or name.startswith("sampling_")}  # fmt: skip
        if not any(_covers(trial, identity) for trial in trials):
            uncovered.append(seed)
    return uncovered


def enqueue_seed_trials(study: optuna.Study, space: SearchSpace) -> list[dict[str, Any]]:
    """Enqueue the uncovered seed trials, at most as many as the budget (``space.n_trials``) has room for.

    Call it once, before any slot asks: parallel slots that each enqueued the next uncovered seed raced (both
    saw the same seed uncovered and ran it twice). Reopening enqueues no seed a trial in any state covers.
    """
    pending = (*FINISHED_STATES, TrialState.RUNNING, TrialState.WAITING)
    room = space.n_trials - len(study.get_trials(deepcopy=False, states=pending))
    seeds = uncovered_seed_trials(study, space)[: max(0, room)]
    for seed in seeds:  # every family and sampling preset gets a trial before TPE takes over
        study.enqueue_trial(seed, user_attrs={"seeded": True})
    return seeds


def recover_orphaned_trials(study: optuna.Study, run_alive: Callable[[str | None], bool]) -> list[int]:
    """Fail trials left RUNNING by a run that is gone, re-enqueueing their parameters to be resumed.

    A trial is orphaned when the slot process that claimed it has exited (checked when it ran on this host),
    or, when that cannot be checked, when its Dagster run is no longer live (``run_alive``).

    Returns the numbers of the failed trials. The re-enqueued trial has the same parameters, hence the same
    model run key, so it resumes from the dead trial's last checkpoint.
    """
    orphans = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial_owner_alive(trial)  # the slot process that would tell it, when it ran on this host
        if owner is True or (owner is None and run_alive(trial.user_attrs.get("dagster_run_id"))):
            continue
        study._storage.set_trial_user_attr(trial._trial_id, "failure", "its run ended while it was running")
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"resumes_trial": trial.number}, skip_if_exists=False)
        orphans.append(trial.number)
    return orphans


def slot_quotas(study: optuna.Study, n_trials: int, parallelism: int) -> list[int]:
    """How many finished (complete or pruned) trials each slot still owes so the study reaches ``n_trials``."""
    done = len(study.get_trials(deepcopy=False, states=FINISHED_STATES))
    remaining = max(0, n_trials - done)
    slots = max(1, min(parallelism, remaining))
    return (
        [remaining // slots + (1 if index < remaining % slots else 0) for index in range(slots)]
        if remaining
        else []
    )


@dataclass
class SlotOutcome:
    """What one slot did, for the run's logs and the study summary."""

    slot: int
    finished: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    resumed: list[int] = field(default_factory=list)
    unplaceable: list[int] = field(default_factory=list)  # failed before launch: no placement holds them
    stopped_by_deadline: bool = False


MAX_FAILED_IN_A_ROW = 3  # a slot whose trials fail this many times in a row stops (it would retry forever)
# Trials that fit nowhere fail at once, without running; the slot asks for another. So many in a row means no
# configuration the space draws fits (with two families drawn at random, 8 misfits of one in a row: 1 in 256).
MAX_UNPLACEABLE_IN_A_ROW = 8


class TrialsKeepFailing(RuntimeError):
    """Several trials in a row failed even after their retries: something every trial needs is broken."""


LaunchTrial = Callable[[optuna.trial.BaseTrial, dict[str, Any], Placement], dict[str, Any]]


def run_slot(
    study: optuna.Study,
    space: SearchSpace,
    slot_key: str,
    quota: int,
    deadline: float,
    place: Callable[[dict[str, Any]], Placement],
    launch: LaunchTrial,
    base_params: Mapping[str, Any],
    trial_retries: int = 1,
    log: Callable[[str], None] = print,
    seed: int = 0,
) -> SlotOutcome:
    """Run trials until ``quota`` of them finished or ``deadline`` (epoch seconds) passed.

    A trial this slot already started (the step was retried after its process died) is resumed first.
    """
    outcome = SlotOutcome(slot=int(slot_key.rsplit("/", 1)[-1]))
    failed_in_a_row = unplaceable_in_a_row = 0
    pending = [trial for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
               if trial.user_attrs.get("slot_key") == slot_key]  # fmt: skip
    while len(outcome.finished) < quota:
        if time.time() >= deadline:
            outcome.stopped_by_deadline = True
            log(f"slot {slot_key}: time budget reached, no new trial started")
            break
        if pending:
            frozen = pending.pop()
            trial: optuna.trial.BaseTrial = optuna.trial.Trial(study, frozen._trial_id)
            claim_trial(study, trial)
            params = dict(frozen.user_attrs["params"])
            outcome.resumed.append(frozen.number)
        else:
            # Postgres heartbeats serve Study.optimize; an ask/tell driver claims its trials instead.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                trial = study.ask()  # draws nothing yet: Optuna samples at the first suggest
            study.sampler = tpe_sampler(proposal_seed(seed, trial.number), space.n_trials)
            claim_trial(study, trial)
            params = {**space.suggest(trial), **base_params}
            trial.set_user_attr("params", params)
            trial.set_user_attr("slot_key", slot_key)
        try:
            placement = place(params)
        except ProvisioningError as error:  # this trial fits nowhere: fail it alone, ask for another
            _tell_unplaceable(study, trial, error, log)
            outcome.unplaceable.append(trial.number)
            unplaceable_in_a_row += 1
            if unplaceable_in_a_row >= MAX_UNPLACEABLE_IN_A_ROW:
                raise TrialsKeepFailing(
                    f"slot {slot_key}: {unplaceable_in_a_row} trials in a row fit nowhere (trials "
                    f"{outcome.unplaceable[-unplaceable_in_a_row:]}), so the slot stops; the last: {error}"
                ) from error
            continue
        unplaceable_in_a_row = 0
        trial.set_user_attr("placement", placement.to_dict())
        trial.set_user_attr("started_at", time.time())
        result = _launch_with_retries(trial, params, placement, launch, trial_retries, log)
        trial.set_user_attr("finished_at", time.time())
        if result is None:
            study.tell(trial.number, state=TrialState.FAIL)
            outcome.failed.append(trial.number)
            failed_in_a_row += 1
            if failed_in_a_row >= MAX_FAILED_IN_A_ROW:  # broken code or data: replacing trials will not help
                raise TrialsKeepFailing(
                    f"slot {slot_key}: {failed_in_a_row} trials in a row failed (trials {outcome.failed[-failed_in_a_row:]}), "
                    f"so the slot stops instead of replacing them; the last failure: "
                    f"{study.get_trials(deepcopy=False)[trial.number].user_attrs.get('failure', 'unknown')}. Fix it "
                    "(each trial's log is in the run) and materialise the study again: finished trials are kept"
                )  # fmt: skip
            continue
        failed_in_a_row = 0
        _record(study, trial, result, placement)
        outcome.finished.append(trial.number)
    return outcome


def _tell_unplaceable(study: optuna.Study, trial, error: ProvisioningError, log) -> None:
    """Fail a trial no placement holds, with the provisioner's reason and fix, without launching it."""
    trial.set_user_attr("failure", f"does not fit: {error}"[:2000])
    trial.set_user_attr("unplaceable", True)
    log(f"trial {trial.number} fails without running, it fits nowhere: {error}")
    study.tell(trial.number, state=TrialState.FAIL)


def _launch_with_retries(trial, params, placement, launch: LaunchTrial, retries: int, log) -> dict | None:
    for attempt in range(retries + 1):
        try:
            return launch(trial, params, placement)
        except Exception as error:
            trial.set_user_attr("failure", f"attempt {attempt + 1}: {type(error).__name__}: {error}"[:2000])
            log(f"trial {trial.number} attempt {attempt + 1} failed: {error}")
    return None


def _record(study: optuna.Study, trial, result: dict[str, Any], placement: Placement) -> None:
    seconds = float(result.get("seconds") or 0.0)
    trial.set_user_attr("seconds", seconds)
    trial.set_user_attr("cost_usd", round(seconds / 3600 * placement.hourly_cost, 6))
    for name in (
        "family",
        "run_key",
        "metrics",
        "resumed_from",
        "uri",
        "cache",
        "epoch",
        "best_epoch",
        "val_interval",
        "forked_from",
    ):
        if result.get(name) is not None:
            trial.set_user_attr(name, result[name])
    value = result.get("value")
    if result["state"] == "pruned":
        study.tell(trial.number, state=TrialState.PRUNED)
    elif value is None or (isinstance(value, float) and math.isnan(value)):
        trial.set_user_attr("failure", "the trial reported no validation value")
        study.tell(trial.number, state=TrialState.FAIL)
    else:
        study.tell(trial.number, float(value))


def _enqueued_params(fixed: Mapping[str, Any]) -> dict[str, Any]:
    """A queued trial's enqueued draws as a finished trial records them: a GNN's sampling preset
    (``sampling_<layers>``) as its batch size, fanouts and strategy, which tell queued GNN seeds apart."""
    params: dict[str, Any] = {}
    for name, value in fixed.items():
        params.update(preset_params(value) if name.startswith("sampling_") else {name: value})
    return params


def leaderboard(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial, best first: number, state, family, parameters, value, time, instance type, cost and, for
    a failed trial, why. A trial still queued (a seed trial not yet asked for when the study's deadline hit)
    shows the parameters it was enqueued with, its family among them."""
    rows = []
    for trial in study.get_trials(deepcopy=False):
        params = trial.user_attrs.get("params")
        if params is None and trial.state == TrialState.WAITING:
            params = _enqueued_params(trial.system_attrs.get("fixed_params", {}))
        params = params or {}
        placement = trial.user_attrs.get("placement", {})
        rows.append({
            "number": trial.number,
            "state": trial.state.name.lower(),
            "family": params.get("family"),
            "value": trial.value,
            "seconds": trial.user_attrs.get("seconds"),
            "instance_type": placement.get("instance_type"),
            "capacity": placement.get("capacity"),
            "cost_usd": trial.user_attrs.get("cost_usd"),
            "failure": trial.user_attrs.get("failure") if trial.state == TrialState.FAIL else None,
            "params": {name: value for name, value in params.items() if name not in {"device", "threads"}},
        })  # fmt: skip
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
    rows.sort(
        key=lambda row: (row["value"] is None, sign * row["value"] if row["value"] is not None else 0.0)
    )
    return rows
