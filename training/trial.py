"""One trial: train one configuration of the GNN family on a query's training table and score it.

Plain functions (no Dagster) used by the model asset, the HPO trials and `benchmarks/bench_f1.py`:
training table rows -> fetcher splits (entity key -> node id, anchor -> seed time) -> model -> trainer ->
validation/test metrics, predictions and embeddings.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import polars as pl
import torch

from models.checkpoints import CheckpointStore, to_bytes
from models.gbdt import GBDTConfig, GBDTModel
from models.gnn import GNNConfig, RelationalGNN
from models.heads import TaskSpec
from models.metrics import compute_metrics
from models.propositional import ROW_CUTOFF, stale_view_rows, vocabulary_limit
from models.propositional_config import PropositionalConfig
from models.trainer import FitResult, Predictions, Trainer, TrainerConfig, seed_everything
from models.uncertainty import ScoredRows
from relational.keys import NODE_ID
from relational.schema import GraphSchema
from stores.batch_cache import BatchCache
from stores.feature_store import StoredFeatures
from stores.fetcher import MinibatchFetcher, TrainingSplit
from stores.graph_store import StoredGraph
from stores.sampler import SamplerConfig
from training.design_cache import relational_features
from training.list_labels import label_vocabulary

__all__ = [
    "GBDTTrialResult",
    "GNNTrialConfig",
    "GNNTrialResult",
    "gnn_artifacts",
    "make_splits",
    "merge_splits",
    "run_gbdt_trial",
    "run_gnn_trial",
    "view_entities",
    "with_frozen_views",
]

SPLITS = ("train", "val", "test")
DAY_SECONDS = 86_400


@dataclass(frozen=True)
class GNNTrialConfig:
    """Everything one GNN trial varies. Sampling (fanouts, strategy, batch size) is kept apart from the model
    so trials that share it share the fetcher's cached batches."""

    model: GNNConfig = field(default_factory=GNNConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    fanouts: tuple[int, ...] = (128, 64)
    strategy: str = "uniform"
    batch_size: int = 512
    eval_batch_size: int = 1024


@dataclass
class GNNTrialResult:
    config: GNNTrialConfig
    spec: TaskSpec
    fit: FitResult
    metrics: dict[str, dict]
    predictions: dict[str, Predictions]
    model: RelationalGNN
    scored: dict[str, ScoredRows] = field(default_factory=dict)  # val/test as metrics read them, by entity


def make_splits(
    table: pl.DataFrame,
    node_keys: pl.DataFrame,
    node_type: str,
    name: str,
    observe_until: int | None = None,
    simulate_staleness: bool = False,
    seed: int = 0,
    freeze_validation: bool | None = None,
) -> dict[str, TrainingSplit]:
    """Training-table rows as fetcher splits: entity key -> node id (row of ``node_keys``), anchor -> the time
    the seed observes the graph at (its seed time).

    ``observe_until`` freezes the graph: no seed sees anything after it (RelBench's frozen regime, where test
    anchors years after the test timestamp still see the database as it stood then). ``simulate_staleness``
    trains and selects as the model will be tested in that regime: validation rows observe the graph as of
    the first validation anchor, and 70% of training rows observe it a uniform 0..span earlier than their
    anchor, span being how far the evaluation anchors run past their first one. It only ever hides rows.
    ``freeze_validation`` (default: ``simulate_staleness``) sets the validation part alone, so variants
    with and without stale training are selected on the same frozen validation view.
    """
    if freeze_validation is None:
        freeze_validation = simulate_staleness
    key_column = node_keys.columns[0]
    lookup = node_keys.select(pl.col(key_column).alias("entity"), pl.int_range(pl.len()).alias("_node"))
    joined = table.with_columns(pl.col("entity").cast(lookup.schema["entity"]))
    joined = joined.join(lookup, on="entity", how="left", maintain_order="left")
    missing = joined.filter(pl.col("_node").is_null())
    if missing.height:
        raise ValueError(
            f"{missing.height} training rows name {node_type} keys that are not in the graph store "
            f"(e.g. {missing['entity'][0]!r}): rebuild the graph store from the same tables"
        )
    digest = hashlib.sha256(joined.select("entity", "anchor_time", "split").write_ipc(None).getvalue())
    anchors = {split: joined.filter(pl.col("split") == split)["anchor_time"].to_numpy().astype(np.int64)
               for split in SPLITS}  # fmt: skip
    span = evaluation_span(joined)
    splits = {}
    for split in SPLITS:
        rows = joined.filter(pl.col("split") == split)
        times = anchors[split].copy()
        if observe_until is not None:
            times = np.minimum(times, observe_until)
        if freeze_validation and split == "val" and len(times):
            times = np.minimum(times, anchors["val"].min())
        if simulate_staleness and split == "train":
            rng = np.random.default_rng(seed)
            gap = (rng.random(len(times)) * span).astype(np.int64)
            times = times - np.where(rng.random(len(times)) < 0.7, gap, 0)
        splits[split] = TrainingSplit(
            f"{name}/{split}@{digest.hexdigest()[:16]}-{observe_until}-{simulate_staleness}-{freeze_validation}-{seed}",
            node_type,
            rows["_node"].to_numpy().astype(np.int64),
            times,
            rows["label"].to_numpy(),
            anchors[split],
        )
    return splits


def evaluation_span(table: pl.DataFrame) -> int:
    """Seconds from the first to the last anchor of the longest evaluation split: how much staler than its
    first row a frozen split's last row is."""
    spans = table.filter(pl.col("split") != "train").group_by("split").agg(
        (pl.col("anchor_time").max() - pl.col("anchor_time").min()).alias("span")
    )  # fmt: skip
    return int(spans["span"].max() or 0) if spans.height else 0


def run_gnn_trial(
    graph: StoredGraph,
    features: StoredFeatures,
    splits: dict[str, TrainingSplit],
    task_type: str,
    config: GNNTrialConfig,
    checkpoints: CheckpointStore | None = None,
    callback: Callable[[int, dict], None] | None = None,
    cache: BatchCache | None = None,
    threads: int | None = None,
    loss: str = "auto",
    label_values: list | None = None,
    target_type: str | None = None,
    holdout: bool = True,
) -> GNNTrialResult:
    """Fit on ``splits['train']``, early-stop on ``val``, then score ``val`` and ``test`` (when present).

    ``threads``: CPU threads for sampling and for torch. Set it to cores / concurrent trials: torch's OpenMP
    threads spin-wait, and two processes oversubscribing a core ran tiny models 15x slower.
    ``label_values``: what each output column means for list tasks (`training.list_labels`).
    ``target_type``: for link prediction, the node type whose nodes the outputs are (node-id order).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    train = splits["train"]
    named = {"classes": list(label_values)} if label_values is not None else {}  # what each output column is
    if target_type is not None:
        named["target_type"] = target_type
    spec = TaskSpec.from_labels(task_type, train.labels, loss=loss, top_k=config.trainer.top_k, **named)
    if task_type == "multiclass_classification":
        splits = {name: _with_labels(split, spec.class_index(split.labels)) for name, split in splits.items()}
        train = splits["train"]
    seed_everything(config.trainer.seed)
    model = RelationalGNN(
        list(graph.node_counts), graph.edge_types, features.schema["node_types"], train.node_type, spec,
        config.model, graph.node_counts,
    )  # fmt: skip
    sampling = SamplerConfig(tuple(config.fanouts), config.strategy)
    fetch = MinibatchFetcher(graph, features, sampling, config.batch_size, cache=cache, threads=threads)
    evaluate = MinibatchFetcher(
        graph, features, sampling, config.eval_batch_size, cache=cache, threads=threads
    )
    trainer = Trainer(model, config.trainer, checkpoints, callback)
    seed = config.trainer.seed

    def train_epoch(epoch: int):
        return fetch.epoch(train, epoch_seed=seed * 1_000 + epoch)

    def batches(split: TrainingSplit):
        return evaluate.epoch(split, epoch_seed=seed, shuffle=False)

    fit = trainer.fit(train_epoch, lambda: batches(splits["val"]))
    metrics, predictions, scored = {}, {}, {}
    for name in ("val", "test") if holdout else ("val",):  # the holdout only for a final model
        if name in splits and len(splits[name].seeds):
            metrics[name], predictions[name] = trainer.evaluate(batches(splits[name]))
            entities = splits[name].seeds[predictions[name].input_id]
            scored[name] = ScoredRows(*trainer.metric_inputs(predictions[name]), entities)
    return GNNTrialResult(config, spec, fit, metrics, predictions, model, scored)


def merge_splits(first: TrainingSplit, second: TrainingSplit) -> TrainingSplit:
    """Two splits' seeds as one (the refit of a chosen configuration trains on train + val)."""
    return TrainingSplit(
        f"{first.name}+{second.name}", first.node_type, np.concatenate([first.seeds, second.seeds]),
        np.concatenate([first.seed_times, second.seed_times]), np.concatenate([first.labels, second.labels]),
        np.concatenate([first.predicted_at(), second.predicted_at()]),
    )  # fmt: skip


def _with_labels(split: TrainingSplit, labels: np.ndarray) -> TrainingSplit:
    return TrainingSplit(
        split.name, split.node_type, split.seeds, split.seed_times, labels, split.anchor_times
    )


def gnn_artifacts(result: GNNTrialResult) -> bytes:
    """The trained GNN as one blob: weights plus everything needed to rebuild and decode it."""
    return to_bytes({"state_dict": result.model.state_dict(), "config": asdict(result.config),
                     "spec": result.spec.to_dict(), "seed_type": result.model.seed_type,
                     "fit": asdict(result.fit), "metrics": result.metrics})  # fmt: skip


@dataclass
class GBDTTrialResult:
    model: GBDTModel
    metrics: dict[str, dict]
    feature_seconds: float
    fit_seconds: float
    features: int
    train_rows: int  # design rows LightGBM trained on (stale copies included)
    scored: dict[str, ScoredRows] = field(default_factory=dict)  # val/test as metrics read them, by entity
    vocabulary_limit: int | None = None  # the cut its category columns were chosen at (scoring reuses it)

    @property
    def model_bytes(self) -> bytes:
        return self.model.to_bytes()


def with_frozen_views(
    rows: pl.DataFrame, observe_until: int | None, simulate_staleness: bool, freeze_validation: bool
) -> pl.DataFrame:
    """Training-table rows plus the views the frozen regime needs, each marked by its ``ROW_CUTOFF`` (the end
    of the database it sees; null: its own anchor). ``simulate_staleness`` (needs ``observe_until``): the
    training rows again as databases frozen up to the evaluation span earlier showed them
    (`stale_view_rows`); ``freeze_validation``: the validation rows again as split ``val_frozen``, seeing the
    database as of the first validation anchor, as `make_splits` shows them to the GNN."""
    rows = rows.with_columns(pl.lit(None, pl.Int64).alias(ROW_CUTOFF))
    if simulate_staleness:
        if observe_until is None:
            raise ValueError("simulate_staleness needs observe_until: the time the database is frozen at")
        train = pl.col("split") == "train"
        stale = stale_view_rows(rows.filter(train), int(observe_until), evaluation_span(rows) / DAY_SECONDS,
                                keep_fresh=False)  # fmt: skip
        rows = pl.concat([rows, stale.select(rows.columns)])
    if freeze_validation:
        validation = rows.filter(pl.col("split") == "val")
        frozen = validation.with_columns(pl.lit(validation["anchor_time"].min(), pl.Int64).alias(ROW_CUTOFF),
                                         pl.lit("val_frozen").alias("split"))  # fmt: skip
        rows = pl.concat([rows, frozen])
    return rows


def view_entities(rows: pl.DataFrame, views: bool) -> pl.DataFrame:
    """What `build_relational_features` reads of `with_frozen_views` rows: the entity, its anchor and, when
    some rows see an earlier database (``views``), their cutoff (the features then say how stale each is)."""
    return rows.select(NODE_ID, "anchor_time", *([ROW_CUTOFF] if views else []))


def run_gbdt_trial(
    frames: Mapping[str, pl.DataFrame],
    schema: GraphSchema,
    entity_table: str,
    entity_keys: pl.DataFrame,
    table: pl.DataFrame,
    task_type: str,
    config: GBDTConfig | None = None,
    observe_until: int | None = None,
    features: PropositionalConfig | None = None,
    freeze_validation: bool = False,
    simulate_staleness: bool = False,
    top_k: int = 10,
    holdout: bool = True,
    masked: Mapping[str, Collection[str]] | None = None,
    cache: BatchCache | None = None,
    tables_version: str | None = None,
) -> GBDTTrialResult:
    """Propositionalise every split in one pass (shared columns), fit LightGBM on train, early-stop on val.

    ``entity_keys``: the entity table's key column and its ``_kumo_id`` (entity value -> node id).
    ``freeze_validation``: validation rows see the database as of the first validation anchor, the same view
    `make_splits` gives the GNN, so the two families are compared on one validation set.
    ``simulate_staleness`` (needs ``observe_until``): training rows also appear as databases frozen up to
    ``span`` earlier would show them (`stale_view_rows`), as frozen test rows will; it only hides data.
    ``top_k``: the K of a ranking task's outputs and @K metrics (it replaces ``config.top_k``).
    List labels (multilabel, ranking) become multi-hot rows over the training categories; forecasting labels
    (a list of horizon values per row) become (rows, horizons) floats.
    ``masked`` (table -> columns): columns no feature reads (a static target's own column, `masked_columns`).
    ``cache`` with ``tables_version`` (what identifies ``frames``: their content hashes): the features are
    shared with the study's other GBDT trials on this node (`training.design_cache`).
    """
    config = replace(config or GBDTConfig(), top_k=top_k)
    started = time.perf_counter()
    key = entity_keys.columns[0]
    rows = table.join(entity_keys.rename({key: "entity"}), on="entity", how="left", maintain_order="left")
    rows = with_frozen_views(rows, observe_until, simulate_staleness, freeze_validation)
    entities = view_entities(rows, simulate_staleness or freeze_validation)
    limit = vocabulary_limit(entities, observe_until)
    splits = rows["split"]
    design = relational_features(frames, schema, entity_table, entities, features or PropositionalConfig(),
                                 observe_until, limit, masked, cache, tables_version)  # fmt: skip
    feature_seconds = time.perf_counter() - started
    labels, vocabulary = rows["label"].to_list(), None
    if task_type in ("multilabel_classification", "ranking"):  # category lists -> multi-hot rows
        vocabulary = label_vocabulary(task_type, [label for label, split in zip(labels, splits, strict=True)
                                                  if split == "train"])  # fmt: skip
        labels = vocabulary.multi_hot(labels, "the training table's label column")[0]
    elif task_type == "forecasting":  # one list of horizon values per row -> (rows, horizons)
        if len({-1 if label is None else len(label) for label in labels}) > 1:
            raise ValueError("forecasting labels must list the same number of horizons in every row")
        labels = np.asarray(labels, dtype=np.float64)
    labels = np.asarray(labels)
    parts, entities = {}, {}
    for split in (*SPLITS, "val_frozen"):
        mask = (splits == split).to_numpy()
        if mask.any():
            parts[split] = (design.filter(pl.Series(mask)), labels[mask])
            entities[split] = rows[NODE_ID].to_numpy()[mask]
    model = GBDTModel(config).fit(*parts["train"], *parts["val"], task_type)
    if vocabulary is not None:
        model.classes_ = np.asarray(vocabulary.values)  # what each output column means, saved with the model
    # each evaluated split is predicted once: its metrics and its scored rows come from the same outputs
    evaluated = (
        ("val", "test", "val_frozen") if holdout else ("val", "val_frozen")
    )  # test: a final model's only
    inputs = {split: model.metric_inputs(*parts[split]) for split in evaluated if split in parts}
    metrics = {split: compute_metrics(task_type, *pair, k=config.top_k) for split, pair in inputs.items()}
    if "val_frozen" in inputs:  # early stopping used the fresh view; selection across families uses this one
        metrics["val_fresh"], metrics["val"] = metrics["val"], metrics.pop("val_frozen")
        inputs["val"], entities["val"] = inputs.pop("val_frozen"), entities["val_frozen"]
    scored = {
        split: ScoredRows(*inputs[split], entities[split]) for split in ("val", "test") if split in inputs
    }
    return GBDTTrialResult(model, metrics, feature_seconds, time.perf_counter() - started - feature_seconds,
                           design.width, len(parts["train"][1]), scored, limit)  # fmt: skip
