"""One training run of either family (GNN or GBDT) for a query: the plain core of model assets and trials.

`train_query_model` reads the published training table and the stores, trains one `ModelRunConfig`, and
writes model, metrics and scored rows under ``<graph>/models/<query>/<run key>/`` of the data plane. The run
key hashes the configuration and the input versions, so a restarted run resumes from its checkpoint and a
finished run is not retrained. HPO trials (`training.hpo_trial`) and the Dagster model assets both call it.
"""

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl
from pydantic import BaseModel

from models.blending import scored_rows_bytes
from models.checkpoints import DataPlaneCheckpoints
from models.gbdt import GBDTConfig
from models.gnn import GNNConfig
from models.trainer import TrainerConfig
from models.uncertainty import metric_intervals
from relational.graph_tables import read_published_tables
from relational.keys import NODE_ID
from relational.pql.queries import NamedQuery
from relational.schema import GraphSchema
from relational.spec import GraphSpec
from stores.batch_cache import BatchCache
from stores.data_plane import DataPlane
from stores.feature_store import FeatureStores
from stores.graph_store import GraphStores
from training.design_cache import design_cache
from training.link_trial import link_query, run_gbdt_link_trial
from training.list_labels import LIST_TASKS, label_vocabulary, multi_hot_splits
from training.run_config_checks import refuse_impossible_run_config
from training.trial import (
    GNNTrialConfig,
    gnn_artifacts,
    make_splits,
    merge_splits,
    run_gbdt_trial,
    run_gnn_trial,
)

__all__ = ["MASKED_INPUTS", "MODEL_CODE", "SCORED_ROWS", "ModelRunConfig", "TrainedModel", "epoch_seconds",
           "masked_columns", "query_top_k", "train_query_model"]  # fmt: skip


class ModelRunConfig(BaseModel):
    """One configuration to train. Defaults are small so `make demo` trains every query in about a minute
    each on a laptop CPU; the F1 benchmark (benchmarks/bench_f1.py) uses the full recipe."""

    family: str = "gnn"
    conv: str = "sage"
    channels: int = 64
    layers: int = 2
    aggr: str = "sum"
    dropout: float = 0.0
    epochs: int = 3
    lr: float = 0.005
    weight_decay: float = 0.0
    batch_size: int = 512
    fanouts: list[int] = [16, 8]
    sampling_strategy: str = (
        "uniform"  # the neighbours each hop keeps: a uniform draw, or "last" (most recent)
    )
    max_steps_per_epoch: int = 2000
    seed: int = 0
    device: str = "auto"
    precision: str = (
        "auto"  # on CUDA: auto/tf32 (TF32 matmuls), bf16 (autocast) or fp32; the CPU is always fp32
    )
    threads: int | None = (
        None  # CPU threads (sampling + torch); default half the cores: steps run two at a time
    )
    observe_until: str | None = None  # ISO date: hide every row after it (the frozen benchmark regime)
    simulate_staleness: bool = False  # train/select on views as stale as the frozen regime's test views
    absolute_time: bool = False  # GNN seeds also see their anchor's season and how stale their view is
    freeze_validation: bool | None = (
        None  # validate on views frozen at the first val anchor; None: as staleness
    )
    refit: bool = (
        False  # the final fit of a chosen configuration: train on train + val (val metrics optimistic)
    )
    holdout: bool = (
        False  # a final model trained on the training rows only (RelBench's protocol): score test too
    )
    gbdt_trees: int = 1000
    gbdt_learning_rate: float = 0.05
    gbdt_leaves: int = 31

    def model_post_init(self, __context: object) -> None:
        refuse_impossible_run_config(self.model_dump())


# Part of every run key: bump it when a family's stored parameters change (2: stacked SAGE layers), so a new
# version never tries to resume an older version's checkpoint under the same key.
MODEL_CODE = 2
SCORED_ROWS = "scored.npz"  # per run: validation and test labels, outputs and entities
# The training table's "table.column" names no input of either family may read (a static target's column),
# copied into each run's summary.json so that scoring hides exactly what training hid.
MASKED_INPUTS = "masked_input_columns"


@dataclass
class TrainedModel:
    run_key: str
    family: str
    task_type: str
    metrics: dict
    seconds: float
    resumed_from: int | None
    uri: str
    best_epoch: int | None = None
    intervals: dict = field(default_factory=dict)  # split -> the tune metric's 95% interval over entities


def epoch_seconds(value: str | None) -> int | None:
    if value is None:
        return None
    from datetime import UTC, datetime

    return int(datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp())


def train_query_model(
    spec: GraphSpec,
    query: NamedQuery,
    config: ModelRunConfig,
    data_plane: DataPlane,
    graph_store: GraphStores,
    feature_store: FeatureStores,
    log=print,
    on_epoch: Callable[[int, dict], None] | None = None,
    batch_cache: BatchCache | None = None,
    graph_version: str | None = None,
    feature_version: str | None = None,
) -> TrainedModel:
    """Train ``config`` on the query's published training table; write model, metrics and predictions.

    ``on_epoch(epoch, validation metrics)`` runs after each GNN epoch (HPO trials report and prune there);
    ``batch_cache`` shares minibatches with other trials of the same sampling configuration. The store
    versions default to the current ones; a study pins them so every trial sees the same data.
    """
    started = time.perf_counter()
    parts = (spec.graph_name, "training_tables")
    table, meta = (
        data_plane.get_frame(*parts, f"{query.name}.parquet"),
        data_plane.get_json(*parts, f"{query.name}.json"),
    )
    task_type = meta["task_type"]
    entity_table, entity_column = meta["parsed"]["entity"]["table"], meta["parsed"]["entity"]["column"]
    observe_until = epoch_seconds(config.observe_until)
    hidden = sorted(meta.get(MASKED_INPUTS) or [])  # a static target's column: no family may read it
    masked = masked_columns(hidden)
    graph = graph_store.open(spec.graph_name, graph_version)
    features = feature_store.open(spec.graph_name, feature_version).with_masked(masked)
    # the mask is part of the inputs: a run trained before masking existed is not resumed as if it were masked
    inputs = f"{meta['content_hash']}|{graph.version}|{features.version}" + (f"|masked={','.join(hidden)}"
                                                                            if hidden else "")  # fmt: skip
    run_key = hashlib.sha256(f"{config.model_dump_json()}|{inputs}|{MODEL_CODE}".encode()).hexdigest()[:16]
    prefix = (spec.graph_name, "models", query.name, run_key)
    extra: dict = {MASKED_INPUTS: hidden}  # facts scoring needs later (summary.json)
    if config.family == "gbdt":
        frames, metas = read_published_tables(spec, data_plane)
        schema = GraphSchema.from_table_metadata(spec, metas)
        # a refit keeps the rounds its selection run chose (refit_config): nothing is chosen on rows it trains on
        gbdt = GBDTConfig(n_estimators=config.gbdt_trees, learning_rate=config.gbdt_learning_rate,
                          num_leaves=config.gbdt_leaves, seed=config.seed, fixed_rounds=config.refit)  # fmt: skip
        keys = frames[entity_table].select(entity_column, NODE_ID)
        if config.refit:  # validation rows train too (their metrics are optimistic; only test is reported)
            table = pl.concat(
                [table, table.filter(pl.col("split") == "val").with_columns(split=pl.lit("train"))]
            )
        tables_version = "|".join(f"{name}={metas[name]['content_hash']}" for name in sorted(metas))
        cache = design_cache(batch_cache) if batch_cache else None
        if task_type == "link_prediction":
            if masked:  # link targets are windows after the anchor: nothing is masked, and the ranker cannot
                raise ValueError(f"the GBDT link ranker cannot hide masked input columns {hidden}")
            result = run_gbdt_link_trial(frames, schema, entity_table, keys, table, link_query(meta["parsed"]),
                                         gbdt, observe_until, query_top_k(meta),
                                         freeze_validation=_freezes_validation(config),
                                         simulate_staleness=config.simulate_staleness, holdout=config.refit or config.holdout,
                                         cache=cache, tables_version=tables_version)  # fmt: skip
        else:
            result = run_gbdt_trial(frames, schema, entity_table, keys, table, task_type, gbdt, observe_until,
                                    freeze_validation=_freezes_validation(config),
                                    simulate_staleness=config.simulate_staleness, top_k=query_top_k(meta),
                                    holdout=config.refit or config.holdout, masked=masked,
                                    cache=cache, tables_version=tables_version)  # fmt: skip
        # a GBDT's "best epoch" is the number of boosting rounds it kept, which its refit reuses
        metrics, resumed_from, best_epoch = result.metrics, None, result.model.best_iteration
        extra["vocabulary_limit"] = getattr(result, "vocabulary_limit", None)
        data_plane.put_bytes(result.model_bytes, *prefix, "model.lgb")
    elif config.family == "gnn":
        splits = make_splits(table, graph_store.node_keys(graph, entity_table), entity_table,
                             f"{spec.graph_name}/{query.name}", observe_until, config.simulate_staleness,
                             config.seed, _freezes_validation(config))  # fmt: skip
        vocabulary = None
        if task_type in LIST_TASKS:
            target = meta["parsed"].get("target_table") if task_type == "link_prediction" else None
            keys = graph_store.node_keys(graph, target).to_series(0) if target else None
            vocabulary = label_vocabulary(task_type, splits["train"].labels, keys)
            splits = multi_hot_splits(splits, vocabulary, log)
        if config.refit:
            splits["train"] = merge_splits(splits["train"], splits["val"])
        trial = GNNTrialConfig(
            GNNConfig(conv=config.conv, channels=config.channels, layers=config.layers, aggr=config.aggr,
                      dropout=config.dropout, absolute_time=config.absolute_time),
            TrainerConfig(epochs=config.epochs, lr=config.lr, weight_decay=config.weight_decay,
                          max_steps_per_epoch=config.max_steps_per_epoch, seed=config.seed, device=config.device,
                          precision=config.precision,
                          patience=0 if config.refit else TrainerConfig.patience, top_k=query_top_k(meta)),
            fanouts=tuple(config.fanouts), strategy=config.sampling_strategy, batch_size=config.batch_size,
        )  # fmt: skip
        result = run_gnn_trial(
            graph, features, splits, task_type, trial, DataPlaneCheckpoints(data_plane, *prefix, "checkpoints"),
            callback=lambda epoch, values: _epoch_done(epoch, values, log, on_epoch),
            cache=batch_cache,
            label_values=vocabulary.values if vocabulary else None,
            target_type=meta["parsed"].get("target_table") if task_type == "link_prediction" else None,
            threads=config.threads or max(1, (os.cpu_count() or 2) // 2),
            holdout=config.refit or config.holdout,
        )  # fmt: skip
        metrics, resumed_from, best_epoch = result.metrics, result.fit.resumed_from, result.fit.best_epoch
        data_plane.put_bytes(gnn_artifacts(result), *prefix, "model.pt")
    else:
        raise ValueError(f"unknown model family {config.family!r}: choose gnn or gbdt")
    intervals = metric_intervals(task_type, result.scored, k=query_top_k(meta))
    scored = scored_rows_bytes(result.scored)
    if scored is not None:  # what a study blends the best models of each family from (models/blending.py)
        data_plane.put_bytes(scored, *prefix, SCORED_ROWS)
    seconds = time.perf_counter() - started
    summary = {"family": config.family, "task_type": task_type, "config": config.model_dump(), "metrics": metrics,
               "intervals": intervals, "seconds": seconds, "inputs": inputs, "resumed_from": resumed_from,
               "best_epoch": best_epoch, "versions": {"table": meta["content_hash"], "graph": graph.version,
               "features": features.version}, **extra}  # fmt: skip
    uri = data_plane.put_json(summary, *prefix, "summary.json")
    return TrainedModel(run_key, config.family, task_type, metrics, seconds, resumed_from, uri, best_epoch,
                        intervals)  # fmt: skip


def masked_columns(names: list[str] | tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """``masked_input_columns`` ("table.column", as a training table's metadata lists them) by table; a name
    without a table is refused rather than ignored (ignoring it would leave the target among the inputs)."""
    by_table: dict[str, list[str]] = {}
    for name in names:
        table, dot, column = str(name).partition(".")
        if not (table and dot and column):
            raise ValueError(f"masked input column {name!r} is not 'table.column'")
        by_table.setdefault(table, []).append(column)
    return {table: tuple(columns) for table, columns in by_table.items()}


def _freezes_validation(config: ModelRunConfig) -> bool:
    return config.simulate_staleness if config.freeze_validation is None else config.freeze_validation


def query_top_k(table_meta: dict) -> int:
    """The K of the query's ``RANK TOP K`` (ranked outputs and @K metrics); 10 when it names none."""
    return int(table_meta["parsed"].get("rank_top_k") or TrainerConfig.top_k)


def _epoch_done(epoch: int, values: dict, log, on_epoch) -> None:
    log(f"epoch {epoch}: " + json.dumps(_rounded(values)))
    if on_epoch is not None:
        on_epoch(epoch, values)


def _rounded(values: dict) -> dict:
    return {key: round(float(value), 4) for key, value in values.items()}
