"""The new-data sensor: when a table's source changes, rebuild exactly what became stale, then rescore.

Each tick fingerprints every table's source (relational/fingerprints.py: local files by size, mtime and hash,
s3:// objects by ETag through the ``s3`` resource) and keeps the fingerprints in the cursor. The first tick
only records them. A changed source makes stale: the table, implied tables its foreign keys feed, every
table that reads a stale one (transitively), the graph store, the feature store and the graph's training
tables; then, for every query of the graph that has a best model, the latest partition of its
``predictions`` and ``embeddings``. Models, studies and best models are left alone unless a retraining
rule fires (serving/retraining.py); then that query's ``best_model`` is refit, never its study.

Why two stages. Checked with Dagster 1.13 (tests/integration/test_new_data_sensor.py): one run may materialise
unpartitioned assets together with one partition of partitioned assets only when every partitioned asset in
it shares one `PartitionsDefinition` (else "All selected assets must have the same or no partitions
definition"); queries may start their daily partitions on different days, so their predictions never share
a run. And Dagster orders steps only by direct dependencies between the selected assets: in a run holding
the training tables and ``best_model`` (whose only dependency, ``hpo_study``, is not selected), the refit
may start before the tables are rewritten; so may ``predictions`` if it depends only on ``best_model``.
Hence: stage one is a single run of the unpartitioned stale part (tables, stores, training tables, all
ordered by their direct dependencies); the sensor waits for it (by run key) and, once it succeeded,
requests stage two: one run per query of its ``best_model`` (when a rule fired) with the latest partition
of its predictions and embeddings. Nothing races: no new change is acted on until both stages finished.
A failed stage-one run stops there (its message says so); fix the data or re-execute the run. (Not tried:
an asset backfill or eager `AutomationCondition`s could order this too, but hand the decision to other
daemons, where no single tick says which table changed and which rule refit the model.)

Every tick says what it saw: a skip reason, or run requests tagged ``kumo/changed_tables``, ``kumo/retrain``
(e.g. ``best_model f1/driver_dnf: model age 41.2 days > 30``) and ``kumo/reason`` (the whole account).
Environment: ``KUMO_NEW_DATA_INTERVAL_SECONDS`` (default 60) between ticks; the retraining thresholds
``KUMO_RETRAIN_MAX_MODEL_AGE_DAYS`` (30) and ``KUMO_RETRAIN_MAX_SCORE_PSI`` (0.25); the ``s3`` resource's
``AWS_ENDPOINT_URL`` / ``AWS_REGION`` (resources/s3.py). Rules are evaluated only for graphs with new data.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AssetKey,
    AssetSelection,
    DagsterRunStatus,
    DefaultSensorStatus,
    PartitionsDefinition,
    ResourceParam,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster_aws.s3 import S3Resource

from kumo_assets.asset_keys import (
    best_model_key,
    embeddings_key,
    feature_store_key,
    graph_store_key,
    hpo_study_key,
    model_key,
    predictions_key,
    stage_of,
    table_asset_key,
    training_table_key,
)
from relational.errors import KumoError
from relational.fingerprints import FileFingerprints, SourceProbe, content_changed, table_fingerprints
from relational.pql.queries import NamedQuery
from relational.spec import GraphSpec
from serving.retraining import RetrainRules, RetrainVerdict, evaluate_retraining
from stores.data_plane import DataPlane

__all__ = ["NewDataState", "TickInputs", "TickOutcome", "build_new_data_sensor", "evaluate_new_data",
           "stale_asset_keys", "stale_tables"]  # fmt: skip

RUN_KEY_TAG = "dagster/run_key"  # the tag the sensor daemon puts a RunRequest's run_key in
LAUNCH_GRACE_SECONDS = 600.0  # a requested run that never appears in this long is given up on
FINISHED = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
AssetIndex = Mapping[AssetKey, PartitionsDefinition | None]


def stale_tables(spec: GraphSpec, changed: Sequence[str]) -> list[str]:
    """Tables to rebuild after ``changed`` tables' sources changed, in spec order.

    An implied table is built from the foreign keys that point at it, so it is stale when a referencing
    table changed; a table is stale when a table it reads (a foreign-key parent) is.
    """
    stale = set(changed)
    for table in changed:
        stale.update(fk.table for fk in spec.foreign_keys(table) if spec.table(fk.table).implied)
    grew = True
    while grew:
        grew = False
        for table in spec.tables:
            if table not in stale and stale.intersection(spec.parents(table)):
                stale.add(table)
                grew = True
    return [table for table in spec.tables if table in stale]


def stale_asset_keys(spec: GraphSpec, tables: Sequence[str], query_names: Sequence[str]) -> list[AssetKey]:
    """The unpartitioned assets stale tables make stale: the tables, both stores, every training table."""
    if not tables:
        return []
    keys = [table_asset_key(spec, table) for table in tables]
    keys += [graph_store_key(spec), feature_store_key(spec)]
    return keys + [training_table_key(spec, name) for name in query_names]


@dataclass
class NewDataState:
    """The cursor: fingerprints per ``graph/table``, and the run(s) a tick waits for (None when idle)."""

    files: dict[str, FileFingerprints] | None = None
    pending: dict[str, Any] | None = None

    @classmethod
    def from_cursor(cls, cursor: str | None) -> NewDataState:
        try:
            payload = json.loads(cursor) if cursor else {}
        except ValueError:
            payload = {}
        return cls(payload.get("files"), payload.get("pending")) if payload.get("version") == 1 else cls()

    def to_cursor(self) -> str:
        return json.dumps({"version": 1, "files": self.files, "pending": self.pending}, sort_keys=True)


@dataclass
class TickInputs:
    """What a tick reads, as plain values and callables (the sensor binds them to Dagster and the stores)."""

    specs: Sequence[GraphSpec]
    queries_by_graph: Mapping[str, Mapping[str, NamedQuery]]
    assets: AssetIndex
    probe: Callable[[GraphSpec, str, FileFingerprints], SourceProbe]
    run_status: Callable[[str], DagsterRunStatus | None]
    verdict: Callable[[str, str], RetrainVerdict]
    now: float = field(default_factory=time.time)


@dataclass
class TickOutcome:
    """The tick's run requests (or skip reason), the next cursor state and a one-line account of both."""

    state: NewDataState
    message: str
    run_requests: list[RunRequest] = field(default_factory=list)

    @property
    def skip_reason(self) -> str | None:
        return None if self.run_requests else self.message


def evaluate_new_data(state: NewDataState, inputs: TickInputs) -> TickOutcome:
    """One tick: advance a pending stage if there is one, else look for changed sources."""
    notes: list[str] = []
    if state.pending is not None:
        outcome = _advance(state, inputs, notes)
        if outcome is not None:
            return outcome
    return _scan(state, inputs, notes)


def _advance(state: NewDataState, inputs: TickInputs, notes: list[str]) -> TickOutcome | None:
    """Wait for the pending runs; after stage one succeeded request stage two. None: idle again, scan."""
    pending = state.pending or {}
    statuses = {key: inputs.run_status(key) for key in pending["run_keys"]}
    missing = [key for key, status in statuses.items() if status is None]
    busy = [
        f"{key} ({status.value})" for key, status in statuses.items() if status and status not in FINISHED
    ]
    if busy or (missing and inputs.now - pending["since"] < LAUNCH_GRACE_SECONDS):
        waiting = busy + [f"{key} (not launched yet)" for key in missing]
        return TickOutcome(
            state, f"waiting for {pending['stage']} run(s) {', '.join(waiting)}: {pending['summary']}"
        )
    state.pending = None
    if missing:
        notes.append(f"{pending['stage']} run(s) {', '.join(missing)} never appeared; gave up on them")
        return None
    failed = [
        f"{key} {status.value}" for key, status in statuses.items() if status != DagsterRunStatus.SUCCESS
    ]
    if pending["stage"] == "refresh":
        notes.append(f"refresh finished ({'; '.join(failed) or 'all succeeded'})")
        return None
    if failed:
        notes.append(f"ingest run {'; '.join(failed)}: nothing rescored; fix the data or re-execute the run")
        return None
    requests, lines = _refresh_requests(pending, inputs)
    if not requests:
        notes.append(
            "ingest run succeeded; nothing to rescore" + ("" if not lines else ": " + "; ".join(lines))
        )
        return None
    state.pending = {"stage": "refresh", "run_keys": [r.run_key for r in requests], "since": inputs.now,
                     "summary": "; ".join(lines), "targets": pending["targets"], "token": pending["token"]}  # fmt: skip
    return TickOutcome(state, "ingest run succeeded; rescoring " + "; ".join(lines), requests)


def _refresh_requests(pending: Mapping[str, Any], inputs: TickInputs) -> tuple[list[RunRequest], list[str]]:
    """Stage two: per query, one run of its best_model (if a rule fired) and the latest partitions."""
    requests, lines = [], []
    for target in pending["targets"]:
        spec = next(spec for spec in inputs.specs if spec.graph_name == target["graph"])
        name, why = f"{target['graph']}/{target['query']}", target["retrain"]
        groups: dict[PartitionsDefinition | None, list[AssetKey]] = {}
        for key in (predictions_key(spec, target["query"]), embeddings_key(spec, target["query"])):
            if key in inputs.assets:
                groups.setdefault(inputs.assets[key], []).append(key)
        refit = best_model_key(spec, target["query"])
        if why and refit in inputs.assets:  # refit first, in the run that scores with it
            groups.setdefault(next(iter(groups), None), []).insert(0, refit)
        if not groups:
            lines.append(f"{name}: no predictions or embeddings assets")
        for partitions_def, keys in groups.items():
            partition = partitions_def.get_last_partition_key() if partitions_def is not None else None
            if partitions_def is not None and partition is None:  # its first day is not over yet
                lines.append(f"{name}: no complete day to score yet")
                keys = [key for key in keys if inputs.assets[key] is None]
                if not keys:
                    continue
            line = f"{name}{' ' + partition if partition else ''}: {', '.join(stage_of(k) for k in keys)}"
            line += f" ({why})" if why else ""
            tags = {"kumo/new_data": "refresh", "kumo/query": name, "kumo/retrain": why or "none",
                    "kumo/reason": f"after {pending['summary']}: {line}"}  # fmt: skip
            run_key = f"new_data:{pending['token']}:refresh:{name}:{partition or 'unpartitioned'}"
            requests.append(
                RunRequest(run_key=run_key, asset_selection=keys, partition_key=partition, tags=tags)
            )
            lines.append(line)
    return requests, lines


def _scan(state: NewDataState, inputs: TickInputs, notes: list[str]) -> TickOutcome:
    """Fingerprint every source; request stage one for what changed."""
    previous = state.files or {}
    current: dict[str, FileFingerprints] = {}
    changed: dict[str, list[str]] = {}
    errors, first_seen, hashed, checked = [], [], 0, 0
    for spec in inputs.specs:
        for table, table_spec in spec.tables.items():
            if table_spec.implied:
                continue
            name = f"{spec.graph_name}/{table}"
            old = previous.get(name)
            try:
                probe = inputs.probe(spec, table, old or {})
            except Exception as exc:  # a missing file, botocore's errors: reported, never a failed tick
                errors.append(f"{name}: {exc if isinstance(exc, KumoError | OSError) else repr(exc)}")
                if old is not None:
                    current[name] = old
                continue
            current[name], hashed, checked = (
                probe.files,
                hashed + len(probe.hashed),
                checked + len(probe.files),
            )
            if old is None:
                first_seen.append(name)
            elif content_changed(old, probe.files):
                changed.setdefault(spec.graph_name, []).append(table)
    first_tick = state.files is None
    state.files = current
    facts = [f"{checked} files of {len(current)} tables checked ({hashed} hashed)"]
    if errors:
        facts.append("unreadable, kept as before: " + "; ".join(errors))
    if first_tick:
        return TickOutcome(
            state, _join(notes, ["first tick: recorded fingerprints, nothing requested", *facts])
        )
    if first_seen:
        facts.append("new tables recorded: " + ", ".join(first_seen))
    if not changed:
        return TickOutcome(state, _join(notes, ["no source changed", *facts]))
    return _request_ingest(state, inputs, changed, notes + facts)


def _request_ingest(
    state: NewDataState, inputs: TickInputs, changed: Mapping[str, list[str]], notes: list[str]
) -> TickOutcome:
    """Stage one: one run of every stale unpartitioned asset; remember which queries to rescore after it."""
    keys: list[AssetKey] = []
    targets, lines, retrain = [], [], []
    names = [f"{graph}/{table}" for graph, tables in changed.items() for table in tables]
    lines.append("tables changed: " + ", ".join(names))
    for spec in inputs.specs:
        if spec.graph_name not in changed:
            continue
        queries = inputs.queries_by_graph.get(spec.graph_name, {})
        tables = stale_tables(spec, changed[spec.graph_name])
        keys += [key for key in stale_asset_keys(spec, tables, list(queries)) if key in inputs.assets]
        for query in queries:
            verdict = inputs.verdict(spec.graph_name, query)
            lines.append(verdict.describe())
            if verdict.has_model:
                fired = verdict.describe() if verdict.retrain else None
                targets.append({"graph": spec.graph_name, "query": query, "retrain": fired})
                retrain += [fired] if fired else []
    lines.append("stale: " + ", ".join(key.to_user_string() for key in keys))
    if targets:
        lines.append("then, once this run succeeds: latest predictions and embeddings of "
                     + ", ".join(f"{t['graph']}/{t['query']}" for t in targets))  # fmt: skip
    message = _join(notes, lines)
    if not keys:
        return TickOutcome(state, message + " (none of these assets is defined: nothing requested)")
    token = hashlib.sha1(f"{state.to_cursor()}{inputs.now}".encode()).hexdigest()[:12]
    run_key = f"new_data:{token}:ingest"
    tags = {"kumo/new_data": "ingest", "kumo/changed_tables": ",".join(names),
            "kumo/retrain": "; ".join(retrain) or "none", "kumo/reason": message}  # fmt: skip
    state.pending = {"stage": "ingest", "run_keys": [run_key], "since": inputs.now, "token": token,
                     "summary": "tables changed: " + ", ".join(names), "targets": targets}  # fmt: skip
    return TickOutcome(state, message, [RunRequest(run_key=run_key, asset_selection=keys, tags=tags)])


def _join(notes: list[str], lines: list[str]) -> str:
    return "; ".join([*notes, *lines])


def build_new_data_sensor(
    specs: Sequence[GraphSpec],
    queries_by_graph: Mapping[str, Mapping[str, NamedQuery]],
    minimum_interval_seconds: int | None = None,
    default_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED,
    clock: Callable[[], float] = time.time,
) -> SensorDefinition:
    """The ``new_data`` sensor over ``specs`` (needs the ``data_plane`` and ``s3`` resources).

    Args:
        minimum_interval_seconds: seconds between ticks; default ``KUMO_NEW_DATA_INTERVAL_SECONDS`` or 60.
        clock: a tick's time in epoch seconds (the model-age rule, the launch grace period); tests evaluate
            a tick at a later time with it. The latest partition to rescore follows Dagster's own clock.
    """
    specs = list(specs)
    interval = minimum_interval_seconds or int(os.environ.get("KUMO_NEW_DATA_INTERVAL_SECONDS") or 60)
    graphs = [[spec.graph_name] for spec in specs]
    trained = [key(spec, query) for spec in specs for query in queries_by_graph.get(spec.graph_name, {})
               for key in (model_key, hpo_study_key)]  # fmt: skip
    target = AssetSelection.key_prefixes(*graphs) - AssetSelection.assets(*trained)

    @sensor(name="new_data", minimum_interval_seconds=interval, asset_selection=target, default_status=default_status,
            description="Rebuilds what changed sources made stale, then rescores the latest day of each query "
                        "(refits best_model when a retraining rule fires)")  # fmt: skip
    def new_data(
        context: SensorEvaluationContext, data_plane: ResourceParam[DataPlane], s3: S3Resource
    ) -> SensorResult:
        if context.repository_def is None:
            raise ValueError(
                "the new_data sensor needs its Definitions (build_sensor_context(definitions=...))"
            )
        graph = context.repository_def.asset_graph
        rules = RetrainRules.from_environment()
        now = clock()
        client = functools.cache(s3.get_client)

        def run_status(run_key: str) -> DagsterRunStatus | None:
            runs = context.instance.get_runs(filters=RunsFilter(tags={RUN_KEY_TAG: run_key}), limit=1)
            return runs[0].status if runs else None

        inputs = TickInputs(
            specs=specs,
            queries_by_graph=queries_by_graph,
            assets={key: graph.get(key).partitions_def for key in graph.materializable_asset_keys},
            probe=lambda spec, table, previous: table_fingerprints(spec, table, previous, client),
            run_status=run_status,
            verdict=lambda graph_name, query: evaluate_retraining(data_plane, graph_name, query, rules, now),
            now=now,
        )
        outcome = evaluate_new_data(NewDataState.from_cursor(context.cursor), inputs)
        context.log.info(outcome.message)
        cursor = outcome.state.to_cursor()
        if outcome.run_requests:
            return SensorResult(run_requests=outcome.run_requests, cursor=cursor)
        return SensorResult(skip_reason=SkipReason(outcome.message), cursor=cursor)

    return new_data
