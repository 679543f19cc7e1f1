"""The ``hpo_study`` asset per query: a graph of ops that opens the study, fans out slots, and summarises.

    open study -> slot 0..P-1 (dynamic outputs; each asks, provisions, launches and tells trials) -> summary

Slots, not single trials, are the dynamic outputs: Dagster resolves a fan-out only when the proposing op
ends, so one output per trial would make every trial be proposed before any result is known (TPE would be
blind), and parallelism would be an executor setting instead of the study's. The ops stay thin; the work is
in `training.hpo` (driver) and `training.hpo_trial` (inside a trial).
"""

import os
import time

from dagster import (
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetIn,
    AssetsDefinition,
    Config,
    DynamicOut,
    DynamicOutput,
    In,
    Nothing,
    OpExecutionContext,
    Output,
    ResourceParam,
    RetryPolicy,
    asset_check,
    config_mapping,
    graph_asset,
    op,
)
from dagster._core.storage.dagster_run import DagsterRunStatus

from cluster.capacity import BUDGET_ATTR
from cluster.provisioner import NodeProvisioner
from kumo_assets.asset_keys import (
    feature_store_key,
    graph_store_key,
    hpo_study_key,
    query_group,
    training_table_key,
)
from kumo_assets.hpo_report import study_metadata
from kumo_assets.study_progress import reporting_progress
from kumo_assets.ui_tables import ui_table
from relational.pql.queries import NamedQuery
from relational.spec import GraphSpec
from resources.launchers import TrialLauncher
from stores.data_plane import DataPlane
from stores.feature_store import FeatureStores
from stores.graph_store import GraphStores
from training.hpo import StudySettings, enqueue_seed_trials, recover_orphaned_trials, run_slot, slot_quotas
from training.hpo_trial import TrialRequest
from training.studies import StudyStorage
from training.study_setup import StudyContext, open_query_study
from training.study_summary import complete_trials_by_family, read_study_summary, write_study_summaries

__all__ = ["HPOStudyConfig", "build_hpo_assets", "build_hpo_checks"]

LIVE = {DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
        DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING}  # fmt: skip


class HPOStudyConfig(Config):
    """One study. Budgets default to the mode's (fast: 8 trials / 30 min, normal: 32 / 4 h, best: 100 / 24 h).

    ``families``: empty = every family the task type supports (GNN, and GBDT for binary, regression and
    multiclass). ``observe_until`` / ``simulate_staleness``: the data regime, as for one model.
    """

    mode: str = "fast"
    n_trials: int | None = None
    timeout_minutes: float | None = None
    parallelism: int = 2
    families: list[str] = []
    seed: int = 0
    n_study_seeds: int = 1  # run the search with seeds seed .. seed + n - 1 and report the spread over them
    pruner: str = "median"
    trial_retries: int = 1
    observe_until: str | None = None
    simulate_staleness: bool = False
    search_staleness: bool = False
    device: str = "auto"
    share_batches: bool = True
    space: dict = {}  # overrides of the mode's search space fields, e.g. {"max_steps_per_epoch": 20}

    def settings(self) -> StudySettings:
        return StudySettings(
            mode=self.mode, n_trials=self.n_trials, timeout_minutes=self.timeout_minutes,
            parallelism=self.parallelism, families=tuple(self.families), seed=self.seed, pruner=self.pruner,
            trial_retries=self.trial_retries, observe_until=self.observe_until,
            simulate_staleness=self.simulate_staleness, search_staleness=self.search_staleness,
            device=self.device, share_batches=self.share_batches,
        )  # fmt: skip


def study_seeds(config: HPOStudyConfig) -> list[int]:
    """The study seeds one materialisation searches with: ``seed`` .. ``seed + n_study_seeds - 1``."""
    if config.n_study_seeds < 1:
        raise ValueError(f"n_study_seeds is {config.n_study_seeds}: set it to 1 or more (1 = one search)")
    return [config.seed + index for index in range(config.n_study_seeds)]


def build_hpo_assets(spec: GraphSpec, queries: dict[str, NamedQuery]) -> list[AssetsDefinition]:
    """Per query: the study, a graph asset."""
    return [_hpo_asset(spec, query) for query in queries.values()]


def build_hpo_checks(spec: GraphSpec, queries: dict[str, NamedQuery]) -> list[AssetChecksDefinition]:
    """Per query: the study's ``families_completed`` check (it reads the summary the study wrote)."""
    return [_families_check(spec, query) for query in queries.values()]


def _families_check(spec: GraphSpec, query: NamedQuery) -> AssetChecksDefinition:
    @asset_check(asset=hpo_study_key(spec, query.name), name="families_completed",
                 description="Every model family the study searched finished at least one trial (warns)")  # fmt: skip
    def families_completed(data_plane: ResourceParam[DataPlane]) -> AssetCheckResult:
        counts = complete_trials_by_family(read_study_summary(data_plane, spec.graph_name, query.name))
        return AssetCheckResult(
            passed=bool(counts) and all(counts.values()),
            severity=AssetCheckSeverity.WARN,
            metadata={"complete trials": ui_table([("family", "string"), ("complete trials", "int")],
                                                  sorted(counts.items()))},
        )  # fmt: skip

    return families_completed


def _run_alive(context: OpExecutionContext):
    def alive(run_id: str | None) -> bool:
        if run_id is None:
            return False
        if run_id == context.run_id:
            return True
        record = context.instance.get_run_by_id(run_id)
        return record is not None and record.status in LIVE

    return alive


def _hpo_asset(spec: GraphSpec, query: NamedQuery) -> AssetsDefinition:
    prefix = f"{spec.graph_name}__{query.name}"

    def study_context(config: dict, data_plane, graph_store, feature_store, study_storage) -> StudyContext:
        return open_query_study(spec, query, HPOStudyConfig(**config).settings(), config.get("space") or {},
                                data_plane, graph_store, feature_store, study_storage)  # fmt: skip

    @op(name=f"{prefix}__open_study", ins={"ready": In(Nothing)}, out=DynamicOut(dict))
    def open_study(
        context: OpExecutionContext,
        config: HPOStudyConfig,
        data_plane: ResourceParam[DataPlane],
        graph_store: ResourceParam[GraphStores],
        feature_store: ResourceParam[FeatureStores],
        study_storage: ResourceParam[StudyStorage],
        trial_launcher: TrialLauncher,
    ):
        """Open (or continue) the study of each study seed, fail trials orphaned by dead runs, enqueue the seed
        trials not yet covered (before any slot asks), split the budget.

        Each slot works the seeds in turn (seed k's trials start once the slot's quota of seed k - 1 is done),
        so ``parallelism`` holds; seed k's timeout runs from the start of the run plus k timeouts."""
        runs: dict[int, list[dict]] = {}
        for index, seed in enumerate(study_seeds(config)):
            study = study_context({**config.model_dump(), "seed": seed}, data_plane, graph_store, feature_store,
                                  study_storage)  # fmt: skip
            if index == 0:
                trial_launcher.check_reachable(data_plane.root, study.storage_url)
            orphans = recover_orphaned_trials(study.study, _run_alive(context))
            if orphans:
                context.log.warning(
                    f"trials {orphans} of {study.name} were left running by a run that ended: re-enqueued to resume"
                )
            seeds = enqueue_seed_trials(study.study, study.space)  # here, once: slots enqueueing them raced
            if seeds:
                context.log.info(
                    f"study {study.name}: {len(seeds)} seed trials enqueued (one per family and preset)"
                )
            quotas = slot_quotas(study.study, study.space.n_trials, config.parallelism)
            deadline = time.time() + 60 * study.space.timeout_minutes * (index + 1)
            study.study.set_user_attr(BUDGET_ATTR, {  # what the capacity sensor plans nodes for
                "n_trials": study.space.n_trials, "parallelism": config.parallelism, "deadline": deadline,
                "launcher": "local" if trial_launcher.runs_locally else "cluster", "run_id": context.run_id,
            })  # fmt: skip
            context.log.info(
                f"study {study.name} (seed {seed}): {sum(quotas)} trials to run on {len(quotas)} slots"
            )
            for slot, quota in enumerate(quotas):
                runs.setdefault(slot, []).append({"seed": seed, "quota": quota, "deadline": deadline})
        runs = runs or {0: []}
        for slot, seed_runs in runs.items():
            yield DynamicOutput({"config": config.model_dump(), "slot": slot, "runs": seed_runs, "slots": len(runs)},
                                mapping_key=f"slot_{slot}")  # fmt: skip

    @op(name=f"{prefix}__run_slot", retry_policy=RetryPolicy(max_retries=2, delay=1))
    def run_trials(
        context: OpExecutionContext,
        work: dict,
        data_plane: ResourceParam[DataPlane],
        graph_store: ResourceParam[GraphStores],
        feature_store: ResourceParam[FeatureStores],
        study_storage: ResourceParam[StudyStorage],
        trial_launcher: TrialLauncher,
        provisioner: ResourceParam[NodeProvisioner],
    ) -> Output[dict]:
        """Ask, provision, launch and tell trials until this slot's quota or the deadline, seed by seed."""
        cores = os.cpu_count() or 1
        slot_key = f"{context.run_id}/{work['slot']}"
        outcomes = {}
        for run in work["runs"]:
            study = study_context({**work["config"], "seed": run["seed"]}, data_plane, graph_store, feature_store,
                                  study_storage)  # fmt: skip

            def place(params, study=study):
                if trial_launcher.runs_locally:
                    return provisioner.place_local(params, study.stats, max(1, cores // work["slots"]),
                                                   study.host_memory_gib / work["slots"])  # fmt: skip
                return provisioner.place(params, study.stats)

            # trial numbers restart in each seed's study: names of later seeds' trials carry the seed
            name = prefix if run["seed"] == work["config"]["seed"] else f"{prefix}-s{run['seed']}"

            def launch(trial, params, placement, study=study, name=name):
                trial.set_user_attr("dagster_run_id", context.run_id)
                request = TrialRequest.for_study(
                    study, trial_id=trial._trial_id, trial_number=trial.number, params=params,
                    data_plane_root=data_plane.root, graph_store_root=graph_store.root,
                    text_encoder=feature_store.text_encoder,
                )  # fmt: skip
                return trial_launcher.launch(context, trial_name=f"{name}-t{trial.number}",
                                             extras=request.to_extras(), placement=placement)  # fmt: skip

            with reporting_progress(
                context, hpo_study_key(spec, query.name), study.study, slot_key, study.space.metric
            ):
                outcome = run_slot(
                    study.study, study.space, slot_key, run["quota"], run["deadline"], place, launch,
                    study.base_params, study.settings.trial_retries, context.log.info, run["seed"],
                )  # fmt: skip
            outcomes[str(run["seed"])] = outcome.__dict__
        return Output({"seeds": outcomes, "config": work["config"]})

    @op(name=f"{prefix}__summarise")
    def summarise(
        context: OpExecutionContext,
        outcomes: list[dict],
        data_plane: ResourceParam[DataPlane],
        graph_store: ResourceParam[GraphStores],
        feature_store: ResourceParam[FeatureStores],
        study_storage: ResourceParam[StudyStorage],
    ) -> Output[dict]:
        """Leaderboard and plots of the whole study (every materialisation so far) as UI metadata."""
        config = outcomes[0]["config"] if outcomes and "config" in outcomes[0] else {}
        contexts = {seed: study_context({**config, "seed": seed}, data_plane, graph_store, feature_store, study_storage)
                    for seed in study_seeds(HPOStudyConfig(**config))}  # fmt: skip
        by_seed = {seed: [outcome["seeds"][str(seed)] for outcome in outcomes if str(seed) in outcome.get("seeds", {})]
                   for seed in contexts}  # fmt: skip
        summary, study = write_study_summaries(contexts, data_plane, by_seed)
        key = hpo_study_key(spec, query.name)
        return Output(summary, metadata=study_metadata(study, summary, data_plane, key, context.run_id[:8]))

    @config_mapping
    def study_config(config: HPOStudyConfig) -> dict:
        """The study's config is set on the asset; the open-study op is the one that reads it."""
        return {f"{prefix}__open_study": {"config": config.model_dump()}}

    @graph_asset(
        key=hpo_study_key(spec, query.name),
        config=study_config,
        ins={
            name: AssetIn(key=key, dagster_type=Nothing)
            for name, key in (
                ("training_table", training_table_key(spec, query.name)),
                ("graph_store", graph_store_key(spec)),
                ("feature_store", feature_store_key(spec)),
            )
        },
        group_name=query_group(spec, query.name),
        description=f"Search: an Optuna study of GNN and GBDT configurations (trials in parallel) for `{query.text}`",
        kinds={"optuna", "pytorch"},
    )
    def _hpo_study(training_table, graph_store, feature_store):
        slots = open_study([training_table, graph_store, feature_store])
        return summarise(slots.map(run_trials).collect())

    return _hpo_study
