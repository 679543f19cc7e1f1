"""The inside of one HPO trial process: what to train comes in as a `TrialRequest`, the result goes back as a dict.

Plain functions (no Dagster): the entrypoint (`training.trial_entry`) wraps them in Dagster Pipes, and
tests call them directly. A trial trains exactly like a one-off model materialisation
(`training.run.train_query_model`), so its checkpoints live under the same run key: a killed trial
started again with the same request resumes from its last epoch. After each epoch it reports the tune metric
to the shared Optuna storage and stops early when the study's pruner says so.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from models.metrics import tune_metric
from relational.pql.queries import NamedQuery, load_queries, queries_beside
from relational.spec import GraphSpec
from relational.spec_loader import load_spec
from stores.batch_cache import BatchCache
from stores.data_plane import DataPlane
from stores.feature_store import FeatureStores
from stores.graph_store import GraphStores
from stores.store_sync import fetch_version
from training.hpo import make_pruner
from training.progress import EPOCH_LOSSES
from training.run import ModelRunConfig, query_top_k, train_query_model
from training.trial_client import FORKED_FROM_ENV

if TYPE_CHECKING:
    from training.study_setup import StudyContext

__all__ = ["TrialRequest", "run_study_trial"]


@dataclass
class TrialRequest:
    """Everything a trial process needs, as JSON-able fields (sent as Pipes extras)."""

    spec_path: str
    query: str
    data_plane_root: str
    graph_store_root: str
    storage_url: str  # Optuna storage, as the driver resolved it (never empty here)
    study_name: str
    trial_id: int
    trial_number: int
    params: dict[str, Any]  # ModelRunConfig fields
    batch_cache_dir: str | None = None
    threads: int | None = None
    text_encoder: str = "auto"
    env: dict[str, str] = field(default_factory=dict)
    # The study pins the data; the spec and queries travel as text (a pod has no copy of the user's files).
    graph_version: str | None = None
    feature_version: str | None = None
    spec_text: str | None = None
    queries_text: str | None = None
    pruner: str = "median"  # the study's; Optuna does not store it (see training.hpo.make_pruner)

    @classmethod
    def for_study(cls, study: StudyContext, *, trial_id: int, trial_number: int, params: dict[str, Any],
                  data_plane_root: str, graph_store_root: str, text_encoder: str) -> TrialRequest:  # fmt: skip
        """The request for one trial of ``study``: its storage, pinned store versions, spec and queries."""
        queries_file = queries_beside(study.spec.path)
        return cls(
            spec_path=str(study.spec.path), query=study.query.name, data_plane_root=data_plane_root,
            graph_store_root=graph_store_root, storage_url=study.storage_url, study_name=study.name,
            trial_id=trial_id, trial_number=trial_number, params=params, batch_cache_dir=study.batch_cache_dir,
            text_encoder=text_encoder, graph_version=study.graph_version, feature_version=study.feature_version,
            spec_text=study.spec.path.read_text(), queries_text=queries_file.read_text() if queries_file else None,
            pruner=study.settings.pruner,
        )  # fmt: skip

    def to_extras(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_extras(cls, extras: dict[str, Any]) -> TrialRequest:
        known = {name: extras[name] for name in cls.__dataclass_fields__ if name in extras}
        return cls(**known)


def run_study_trial(request: TrialRequest, log=print) -> dict[str, Any]:
    """Train the request's configuration, reporting each epoch to its Optuna trial; return the outcome.

    The outcome's ``state`` is ``complete`` (with ``value``, the validation tune metric) or ``pruned``
    (with the last reported ``value``); errors propagate, so the process exits non-zero and the driver
    retries or replaces the trial.
    """
    from training.studies import StudyStorage

    started = time.perf_counter()
    spec, query = _spec_and_query(request)
    storage = StudyStorage(url=request.storage_url).get_storage(request.data_plane_root)
    study = optuna.load_study(
        study_name=request.study_name, storage=storage, pruner=make_pruner(request.pruner)
    )
    trial = optuna.trial.Trial(study, request.trial_id)
    config = ModelRunConfig(**{**request.params, "threads": request.threads})
    data_plane = DataPlane(root=request.data_plane_root)
    graph_store = GraphStores(root=request.graph_store_root)
    feature_store = FeatureStores(root=request.graph_store_root, text_encoder=request.text_encoder)
    cache = BatchCache(request.batch_cache_dir) if request.batch_cache_dir else None
    for store, version in ((graph_store, request.graph_version), (feature_store, request.feature_version)):
        fetch_version(data_plane, store.directory(spec.graph_name), spec.graph_name, version)
    table_meta = data_plane.get_json(spec.graph_name, "training_tables", f"{query.name}.json")
    metric = tune_metric(table_meta["task_type"], query_top_k(table_meta))
    last: dict[str, float] = {}

    losses: list[float] = []

    def on_epoch(epoch: int, values: dict) -> None:
        last["value"], last["epoch"] = float(values[metric]), epoch
        if (
            "loss" in values
        ):  # the training loss beside the reported validation value: live progress shows both
            losses.append(float(values["loss"]))
            trial.set_user_attr(EPOCH_LOSSES, losses)
        trial.report(float(values[metric]), epoch)
        _chaos_kill(epoch, request)
        if (
            epoch < config.epochs - 1 and trial.should_prune()
        ):  # after the last epoch there is nothing to save
            raise optuna.TrialPruned(f"pruned after epoch {epoch}: {metric}={values[metric]:.4f}")

    try:
        trained = train_query_model(spec, query, config, data_plane, graph_store, feature_store, log,
                                    on_epoch=on_epoch, batch_cache=cache, graph_version=request.graph_version,
                                    feature_version=request.feature_version)  # fmt: skip
    except optuna.TrialPruned as pruned:
        log(str(pruned))
        return {"state": "pruned", "value": last.get("value"), "epoch": last.get("epoch"),
                "seconds": time.perf_counter() - started, "pid": os.getpid(),
                "forked_from": os.environ.get(FORKED_FROM_ENV)}  # fmt: skip
    value = float(trained.metrics["val"][metric])
    return {
        "state": "complete",
        "value": value,
        "metric": metric,
        "metrics": trained.metrics,
        "family": trained.family,
        "run_key": trained.run_key,
        "resumed_from": trained.resumed_from,
        "best_epoch": trained.best_epoch,
        "val_interval": trained.intervals.get("val"),
        "uri": trained.uri,
        "seconds": time.perf_counter() - started,
        "pid": os.getpid(),
        "forked_from": os.environ.get(FORKED_FROM_ENV),  # set when the warm trial server started it
        "cache": _cache_stats(cache),
    }


def _spec_and_query(request: TrialRequest) -> tuple[GraphSpec, NamedQuery]:
    """The graph spec and the query, from the texts the driver sent (else from the spec's path)."""
    if request.spec_text is None:
        return _load_spec_and_query(Path(request.spec_path), request)
    with tempfile.TemporaryDirectory(prefix="kumo-trial-spec-") as folder:
        original = Path(request.spec_path)  # the folder name matters: it names the graph unless the spec does
        spec_path = Path(folder) / original.parent.name / original.name
        spec_path.parent.mkdir()
        spec_path.write_text(request.spec_text)
        if request.queries_text is not None:
            (spec_path.parent / "queries.yaml").write_text(request.queries_text)
        return _load_spec_and_query(spec_path, request)


def _load_spec_and_query(spec_path: Path, request: TrialRequest) -> tuple[GraphSpec, NamedQuery]:
    spec = load_spec(spec_path)
    queries_file = queries_beside(spec.path)
    if queries_file is None:
        raise FileNotFoundError(
            f"no queries.yaml beside {request.spec_path}: the trial cannot find query {request.query!r}"
        )
    return spec, load_queries(queries_file)[request.query]


def _chaos_kill(epoch: int, request: TrialRequest) -> None:
    """Fault drill: with ``KUMO_CHAOS_KILL_AFTER_EPOCH=N`` (and ``KUMO_CHAOS_DIR``), the first run of each trial
    SIGKILLs itself right after epoch N's checkpoint, as a preempted node would; its retry must resume."""
    target, folder = os.environ.get("KUMO_CHAOS_KILL_AFTER_EPOCH"), os.environ.get("KUMO_CHAOS_DIR")
    if target is None or folder is None or int(target) != epoch:
        return
    marker = Path(folder) / f"{request.study_name}-{request.trial_number}"
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)


def _cache_stats(cache: BatchCache | None) -> dict[str, float]:
    if cache is None:
        return {}
    stats = cache.stats
    return {"hits": stats.hits, "misses": stats.misses, "hit_rate": stats.hit_rate}
