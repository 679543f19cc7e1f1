"""One GBDT trial for a link-prediction query (``LIST_DISTINCT(fk) RANK TOP K``), scored like the GNN's.

Per training-table row: candidate targets (the entity's past links and the recent most-linked targets),
each a pair row with its link history, the entity's propositional features and the target's. A binary
LightGBM learns which pairs link in the label window; each row's best candidates are its ranking.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import polars as pl
import polars.selectors as cs

from models.gbdt import GBDTConfig
from models.gbdt_links import LinkRanker, PairMatrix
from models.link_candidates import CandidateConfig, candidate_pairs, link_log, popularity_order
from models.metrics import compute_metrics
from models.propositional import as_of_times, build_relational_features, vocabulary_limit
from models.propositional_config import PropositionalConfig
from models.uncertainty import ScoredRows
from relational.keys import NODE_ID
from relational.schema import GraphSchema
from stores.batch_cache import BatchCache
from training.design_cache import relational_features
from training.trial import SPLITS, GBDTTrialResult, view_entities, with_frozen_views

__all__ = [
    "TARGET_FEATURES",
    "LinkQuery",
    "link_query",
    "rank_link_rows",
    "run_gbdt_link_trial",
    "subsample_training_negatives",
]

# the targets' own columns and their links' aggregates: lighter than the entity's (many candidates per row)
TARGET_FEATURES = PropositionalConfig(windows_days=(30, 365, None), last_events=(3,), max_hops=1,
                                      aggregations=("sum", "mean"), calendar_features=False,
                                      global_counts=False, via_last_parent=False)  # fmt: skip


@dataclass(frozen=True)
class LinkQuery:
    """What a link-prediction query ranks: ``target_column`` of ``event_table`` (a foreign key to
    ``target_table``), reached from the entity through the foreign keys named in ``via``."""

    event_table: str
    target_column: str
    via: tuple[str, ...]
    target_table: str


def link_query(parsed: Mapping) -> LinkQuery:
    """The link a training table's parsed query ranks (its ``LIST_DISTINCT`` target aggregation)."""
    window = next((w for w in parsed.get("windows", {}).values() if w["function"] == "LIST_DISTINCT"), None)
    if window is None or not parsed.get("target_table"):
        raise ValueError(
            "not a link-prediction query: it needs PREDICT LIST_DISTINCT(<table>.<fk>, ...) RANK TOP K"
        )
    return LinkQuery(window["table"], window["column"], tuple(window["via"]), parsed["target_table"])


def run_gbdt_link_trial(frames: Mapping[str, pl.DataFrame], schema: GraphSchema, entity_table: str,
                        entity_keys: pl.DataFrame, table: pl.DataFrame, link: LinkQuery, config: GBDTConfig | None = None,
                        observe_until: int | None = None, top_k: int = 10, features: PropositionalConfig | None = None,
                        candidates: CandidateConfig | None = None, objective: str = "lambdarank",
                        train_negatives: int | None = 40, freeze_validation: bool = False,
                        simulate_staleness: bool = False, holdout: bool = True, cache: BatchCache | None = None,
                        tables_version: str | None = None) -> GBDTTrialResult:  # fmt: skip
    """Fit the pair scorer on train, early-stop on val, and score every split's top-``top_k`` rankings.

    ``entity_keys``: the entity table's key column and its ``_kumo_id``; ``observe_until`` freezes the
    database for every row (the GBDT reads no row after it), as for the other task types.
    ``train_negatives``: training rows keep every positive candidate and at most this many negative ones
    (a fixed pseudo-random choice); None keeps all. Validation and test rows keep all their candidates.
    ``simulate_staleness``/``freeze_validation``: as `run_gbdt_trial` (`with_frozen_views`): a row's
    candidates and features are those of the database its view sees, its label stays its anchor's.
    ``cache`` with ``tables_version``: the entities' features are shared with the study's other GBDT trials
    (`training.design_cache`).
    """
    started = time.perf_counter()
    key = entity_keys.columns[0]
    rows = table.join(entity_keys.rename({key: "entity"}), on="entity", how="left", maintain_order="left")
    unknown = rows.get_column(NODE_ID).null_count()
    if unknown:
        raise ValueError(f"{unknown} training-table rows name an entity missing from {entity_table}")
    rows = with_frozen_views(rows, observe_until, simulate_staleness, freeze_validation)
    as_of = as_of_times(rows, observe_until).to_numpy()
    log = link_log(frames, schema, link.event_table, link.target_column, link.via)
    candidates = candidates or CandidateConfig()
    candidates = replace(candidates, popular_limit=max(candidates.popular_limit, top_k))
    pairs = candidate_pairs(log, rows.get_column(NODE_ID).to_numpy(), as_of, candidates)
    relevant = _relevant_targets(frames, schema, link.target_table, rows)
    pairs = pairs.join(relevant.with_columns(label=pl.lit(1, pl.Int8)), on=["row", "target"], how="left")
    pairs = pairs.with_columns(pl.col("label").fill_null(0))
    split_of_row = rows.get_column("split")
    if train_negatives is not None:  # before the wide joins: they dominate a link trial's memory
        pairs = subsample_training_negatives(pairs, split_of_row, train_negatives)
    views = view_entities(rows, simulate_staleness or freeze_validation)
    limit = vocabulary_limit(views, observe_until)  # what scoring other rows later pins category columns to
    entity_design = relational_features(frames, schema, entity_table, views, features or PropositionalConfig(),
                                        observe_until, limit, cache=cache, tables_version=tables_version)  # fmt: skip
    widen = PairWidener(frames, schema, link.target_table, pairs, entity_design, as_of, limit)
    pairs = as_float32(pairs)
    feature_seconds = time.perf_counter() - started

    # Pairs stay narrow; a bounded chunk at a time is joined with its features, straight into the matrices
    # LightGBM reads (train, and val for early stopping) or into the ranker, so no split is ever wide at once.
    row_ids = {split: np.flatnonzero((split_of_row == split).to_numpy()) for split in (*SPLITS, "val_frozen")}
    train = pair_matrix(widen, pairs, row_ids["train"])
    ranker = LinkRanker(config, candidates, top_k, log.n_targets, objective)
    ranker.fit(train, pair_matrix(widen, pairs, row_ids["val"], train.names))
    train_pairs = len(train.labels)
    del train  # LightGBM holds its binned copy
    ranker.classes_ = _target_keys(frames, schema, link.target_table, log.n_targets)
    metrics, scored = {}, {}
    for split in (
        ("val", "test", "val_frozen") if holdout else ("val", "val_frozen")
    ):  # test: a final model's only
        if not len(row_ids[split]):
            continue
        fallback = popularity_order(log, int(as_of[row_ids[split]].min()), candidates)
        ranked, split_pairs = rank_in_chunks(ranker, pairs, row_ids[split], widen, fallback)
        truth = _relevant_lists(relevant, row_ids[split])
        metrics[split] = compute_metrics("link_prediction", truth, ranked, k=top_k)
        metrics[split]["candidate_recall"] = _candidate_recall(split_pairs, truth)
        scored[split] = ScoredRows(truth, ranked, rows.get_column(NODE_ID).to_numpy()[row_ids[split]])
    if "val_frozen" in metrics:  # early stopping used the fresh view; selection across families uses this one
        metrics["val_fresh"], metrics["val"] = metrics["val"], metrics.pop("val_frozen")
        scored["val"] = scored.pop("val_frozen")
    return GBDTTrialResult(ranker, metrics, feature_seconds, time.perf_counter() - started - feature_seconds,
                           len(ranker.feature_names), train_pairs, scored, limit)  # fmt: skip


def rank_link_rows(
    ranker: LinkRanker,
    frames: Mapping[str, pl.DataFrame],
    schema: GraphSchema,
    entity_table: str,
    link: LinkQuery,
    nodes: np.ndarray,
    as_of: np.ndarray,
    limit: int | None,
    fallback_at: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-K target node ids and their scores for rows (entity node ids, as-of times) with a fitted ranker:
    the candidates, features (category columns pinned at ``limit``, the trial's `vocabulary_limit`) and
    popularity fallback (as of ``fallback_at``, default the earliest row) that a trial's evaluation gives the
    same rows."""
    log = link_log(frames, schema, link.event_table, link.target_column, link.via)
    pairs = candidate_pairs(log, nodes, as_of, ranker.candidates)
    views = pl.DataFrame({NODE_ID: nodes.astype(np.int64), "anchor_time": as_of.astype(np.int64)})
    design = build_relational_features(
        frames, schema, entity_table, views, PropositionalConfig(), None, limit
    )
    widen = PairWidener(frames, schema, link.target_table, pairs, design, as_of, limit)
    moment = fallback_at if fallback_at is not None else (int(as_of.min()) if len(as_of) else 0)
    fallback = popularity_order(log, int(moment), ranker.candidates)
    parts = [ranker.rank_with_scores(wide, len(rows), fallback)
             for _, rows, wide in _wide_chunks(widen, as_float32(pairs), np.arange(len(nodes)), None)]  # fmt: skip
    if not parts:
        return np.zeros((0, ranker.width), np.int64), np.zeros((0, ranker.width))
    return np.concatenate([ranked for ranked, _ in parts]), np.concatenate([scores for _, scores in parts])


PAIRS_PER_CHUNK = 100_000  # pairs widened at once: ~0.4 GB at 1,000 float32 features


def rank_in_chunks(
    ranker: LinkRanker,
    pairs: pl.DataFrame,
    row_ids: np.ndarray,
    widen: PairWidener,
    fallback: np.ndarray,
    pairs_per_chunk: int | None = None,
) -> tuple[np.ndarray, pl.DataFrame]:
    """Rankings of the table rows ``row_ids`` (in that order), widening at most ``pairs_per_chunk`` (default
    `PAIRS_PER_CHUNK`) candidate pairs at a time; also their narrow pairs, rows local."""
    rankings = [ranker.rank(wide, len(chunk_rows), fallback)
                for _, chunk_rows, wide in _wide_chunks(widen, pairs, row_ids, pairs_per_chunk)]  # fmt: skip
    return np.concatenate(rankings), _local_rows(pairs, row_ids)


def pair_matrix(
    widen: PairWidener,
    pairs: pl.DataFrame,
    row_ids: np.ndarray,
    names: list[str] | None = None,
    pairs_per_chunk: int | None = None,
) -> PairMatrix:
    """The candidate pairs of table rows ``row_ids`` as one float32 matrix, filled a bounded chunk at a time
    so that no wide frame of the whole split exists; rows local (0..n-1 in ``row_ids`` order)."""
    total = int(pairs.get_column("row").is_in(row_ids).sum())
    matrix, labels, rows, filled = None, np.empty(total), np.empty(total, dtype=np.int64), 0
    for offset, _, wide in _wide_chunks(widen, pairs, row_ids, pairs_per_chunk):
        part = PairMatrix.from_frame(wide, names)
        if matrix is None:  # the first chunk names the columns (unless the caller did)
            names, matrix = part.names, np.empty((total, len(part.names)), dtype=np.float32)
        end = filled + len(part.labels)
        matrix[filled:end], labels[filled:end], rows[filled:end] = (
            part.features,
            part.labels,
            part.rows + offset,
        )
        filled = end
    if matrix is None:  # no rows
        matrix = np.empty((0, len(names or [])), dtype=np.float32)
    return PairMatrix(names or [], matrix, labels, rows)


def _wide_chunks(widen: PairWidener, pairs: pl.DataFrame, row_ids: np.ndarray, pairs_per_chunk: int | None):
    """(first row's position, the chunk's table rows, their wide pairs) over ``row_ids`` in order, each chunk
    at most ``pairs_per_chunk`` pairs (default `PAIRS_PER_CHUNK`) or one row's when it has more."""
    if not len(row_ids):
        return
    limit = max(pairs_per_chunk or PAIRS_PER_CHUNK, 1)
    counts = np.bincount(pairs.get_column("row").to_numpy(), minlength=int(row_ids.max()) + 1)[row_ids]
    start, filled = 0, 0
    for position, count in enumerate(counts.tolist()):
        if filled and filled + count > limit:
            yield start, row_ids[start:position], widen(pairs, row_ids[start:position])
            start, filled = position, 0
        filled += count
    yield start, row_ids[start:], widen(pairs, row_ids[start:])


class PairWidener:
    """Candidate pairs of chosen table rows joined with their entity's features and their target's (as of
    the row's view), rows renumbered 0..n-1 in the order given. Both feature sets are built once, over
    every row and every pair, so that all splits share columns and category codes."""

    def __init__(self, frames: Mapping[str, pl.DataFrame], schema: GraphSchema, target_table: str,
                 pairs: pl.DataFrame, entity_design: pl.DataFrame, as_of: np.ndarray,
                 limit: int | None = None) -> None:  # fmt: skip
        self.as_of = pl.Series("as_of", as_of.astype(np.int64))
        self.entity = (
            as_float32(entity_design).with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
        )
        queries = pl.DataFrame(
            {NODE_ID: pairs.get_column("target"), "anchor_time": self.as_of[pairs.get_column("row")]}
        )
        queries = queries.unique()
        targets = as_float32(
            build_relational_features(frames, schema, target_table, queries, TARGET_FEATURES, None, limit)
        )
        targets = targets.rename({name: f"target__{name}" for name in targets.columns})
        self.targets = queries.rename({NODE_ID: "target", "anchor_time": "as_of"}).hstack(targets)

    def __call__(self, pairs: pl.DataFrame, row_ids: np.ndarray) -> pl.DataFrame:
        local = _local_rows(pairs, row_ids, keep_row=True)
        local = local.with_columns(as_of=self.as_of[local.get_column("row")])
        wide = local.join(self.targets, on=["target", "as_of"], how="left").join(
            self.entity, on="row", how="left"
        )
        return wide.drop("as_of", "row").rename({"_local": "row"}).select("row", pl.exclude("row"))


def as_float32(frame: pl.DataFrame) -> pl.DataFrame:
    """Float64 feature columns as Float32: LightGBM reads float32 anyway (`feature_matrix`), so this halves a
    wide frame and changes no score."""
    return frame.with_columns(cs.float().cast(pl.Float32))


def subsample_training_negatives(pairs: pl.DataFrame, split_of_row: pl.Series, limit: int) -> pl.DataFrame:
    """Pairs of training rows: every positive and at most ``limit`` negatives per row, chosen by a hash of
    (row, target) so that the choice is the same every run; other splits' pairs untouched."""
    training = pl.Series(split_of_row.to_numpy() == "train")[pairs.get_column("row")]
    draw = pl.struct("row", "target").hash(seed=17).rank("ordinal").over("row", pl.col("label"))
    keep = ~pl.col("training") | (pl.col("label") > 0) | (draw <= limit)
    return pairs.with_columns(training=training).filter(keep).drop("training")


def _relevant_targets(
    frames: Mapping[str, pl.DataFrame], schema: GraphSchema, target_table: str, rows: pl.DataFrame
) -> pl.DataFrame:
    """(row, target node id) for every target a row's label lists (targets unknown to the table dropped)."""
    keys = frames[target_table].select(pl.col(_single_key(schema, target_table)).alias("label"),
                                       pl.col(NODE_ID).alias("target"))  # fmt: skip
    listed = rows.select(pl.int_range(pl.len(), dtype=pl.Int64).alias("row"), "label").explode(
        "label", empty_as_null=False
    )
    listed = listed.drop_nulls("label").with_columns(pl.col("label").cast(keys.schema["label"]))
    return listed.join(keys, on="label").select("row", pl.col("target").cast(pl.Int64)).unique()


def _target_keys(frames: Mapping[str, pl.DataFrame], schema: GraphSchema, table: str, n_targets: int) -> list:
    """The primary key of each target node id (None for an id with no row)."""
    frame = frames[table]
    keys = [None] * n_targets
    for node, value in zip(frame.get_column(NODE_ID).to_list(), frame.get_column(_single_key(schema, table)).to_list(),
                           strict=True):  # fmt: skip
        keys[node] = value
    return keys


def _single_key(schema: GraphSchema, table: str) -> str:
    primary_key = schema.tables[table].primary_key
    if len(primary_key) != 1:
        raise ValueError(f"{table}: ranking needs a single-column primary key, it has {primary_key}")
    return primary_key[0]


def _local_rows(pairs: pl.DataFrame, row_ids: np.ndarray, keep_row: bool = False) -> pl.DataFrame:
    """The pairs of table rows ``row_ids``, sorted by (row, target), with ``_local`` (``keep_row``) or ``row``
    the row's position in ``row_ids``."""
    renumber = pl.DataFrame(
        {"row": row_ids.astype(np.int64), "_local": np.arange(len(row_ids), dtype=np.int64)}
    )
    local = pairs.join(renumber, on="row").sort("_local", "target")
    return local if keep_row else local.drop("row").rename({"_local": "row"}).select("row", pl.exclude("row"))


def _relevant_lists(relevant: pl.DataFrame, row_ids: np.ndarray) -> list[np.ndarray]:
    by_row = relevant.group_by("row").agg("target")
    lookup = dict(zip(by_row.get_column("row").to_list(), by_row.get_column("target").to_list(), strict=True))
    return [np.asarray(lookup.get(int(row), []), dtype=np.int64) for row in row_ids]


def _candidate_recall(pairs: pl.DataFrame, truth: list[np.ndarray]) -> float:
    """Share of the relevant (row, target) pairs among the candidates: the ceiling of recall@any K."""
    total = sum(len(targets) for targets in truth)
    return float(pairs.get_column("label").sum() / total) if total else float("nan")
