"""Link prediction with LightGBM: one binary booster scores (entity, candidate target) pairs, and a row's
best-scored candidates are its ranked targets, as node ids of the target table, as the GNN's head ranks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl

from models.gbdt import GBDTConfig, GBDTModel, feature_matrix
from models.link_candidates import CandidateConfig

__all__ = ["PAIR_KEYS", "LinkRanker", "PairMatrix"]

PAIR_KEYS = ("row", "target", "label")  # columns of a pair frame that are not features
_FORMAT_VERSION = 1
# pairs LightGBM samples to place its feature bins (its default 200,000 held ~1.5 GB of doubles at 1,093
# features; 50,000 moved basket MAP@10 by under 0.001)
BIN_SAMPLE_PAIRS = 50_000


@dataclass
class PairMatrix:
    """Candidate pairs as LightGBM reads them: float32 ``features`` (columns ``names``), 0/1 ``labels`` and
    each pair's row (pairs sorted by row)."""

    names: list[str]
    features: np.ndarray
    labels: np.ndarray
    rows: np.ndarray

    @classmethod
    def from_frame(cls, pairs: pl.DataFrame, names: list[str] | None = None) -> PairMatrix:
        """From a wide pair frame (``row``, ``target``, ``label``, features); ``names`` fixes the columns."""
        names = list(_features(pairs).columns) if names is None else names
        return cls(names, feature_matrix(_features(pairs), names), pairs.get_column("label").to_numpy(),
                   pairs.get_column("row").to_numpy())  # fmt: skip


class LinkRanker:
    """A pair-scoring GBDT with what ranking needs: K, the target count and the candidate settings."""

    task_type = "link_prediction"

    def __init__(
        self,
        config: GBDTConfig | None = None,
        candidates: CandidateConfig | None = None,
        top_k: int = 10,
        n_targets: int = 0,
        objective: str = "lambdarank",
    ) -> None:
        if objective not in {"lambdarank", "binary"}:
            raise ValueError(f"objective must be 'lambdarank' or 'binary', got {objective!r}")
        self.objective = objective
        self.scorer = GBDTModel(config)
        self.candidates = candidates or CandidateConfig()
        self.top_k = int(top_k)
        self.n_targets = int(n_targets)
        self.classes_: list | None = None  # the target key of each node id, saved so rankings decode to keys

    @property
    def width(self) -> int:
        """Ranked targets per row: K, or every target when the table has fewer."""
        return min(self.top_k, self.n_targets)

    @property
    def feature_names(self) -> list[str]:
        return self.scorer.feature_names

    def fit(self, train: PairMatrix, val: PairMatrix) -> LinkRanker:
        """Fit on train pairs (``label`` 1 = the row's entity links to the target in the label window),
        keeping the round with the best MAP@K of val's candidates. ``objective`` "lambdarank" optimises
        each row's ranking directly (rows with no positive candidate teach nothing); "binary" scores pairs."""
        for name, pairs in (("train", train), ("val", val)):
            if not len(pairs.labels) or len(np.unique(pairs.labels)) < 2:
                raise ValueError(f"link prediction: the {name} candidates hold no positive or no negative pair; "
                                 "widen the label window or raise the candidate limits")  # fmt: skip
        if val.names != train.names:
            raise ValueError("link prediction: the val pairs' feature columns differ from the train pairs'")
        scorer = self.scorer
        scorer.task_type, scorer.constants, scorer.clamp = "binary_classification", None, None
        scorer.feature_names = list(train.names)
        train_set = lgb.Dataset(
            train.features, train.labels, group=_group_sizes(train.rows), free_raw_data=True
        )
        val_label = val.labels
        val_set = lgb.Dataset(val.features, val_label, group=_group_sizes(val.rows), reference=train_set)
        metric = f"map@{self.top_k}"
        params = {"objective": self.objective, "bagging_fraction": 1.0, "bagging_freq": 0,
                  "bin_construct_sample_cnt": BIN_SAMPLE_PAIRS}  # fmt: skip
        if self.objective == "lambdarank":
            params["lambdarank_truncation_level"] = max(self.top_k, 20)
        feval = _candidate_map(val.rows, val_label, self.top_k, metric)
        scorer.boosters, scorer.best_iterations, scorer.best_scores = [], [], []
        scorer.boost_members(params, train_set, val_set, metric, True, feval)
        return self

    @property
    def best_iteration(self) -> int:
        """The boosting rounds its scorer kept (what a refit reuses)."""
        return self.scorer.best_iteration

    def rank(self, pairs: pl.DataFrame, n_rows: int, fallback: np.ndarray) -> np.ndarray:
        """(n_rows, width) target node ids, best first; a row with too few candidates is completed from
        ``fallback`` (targets in order of preference, e.g. by popularity)."""
        return self.rank_with_scores(pairs, n_rows, fallback)[0]

    def rank_with_scores(
        self, pairs: pl.DataFrame, n_rows: int, fallback: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """`rank` and the pair score of each ranked target (NaN where the fallback filled a place)."""
        scored = pairs.select("row", "target").with_columns(
            score=pl.Series(self.scorer.predict(_features(pairs)))
        )
        best = scored.sort(["row", "score", "target"], descending=[False, True, False])
        best = best.with_columns(place=pl.int_range(pl.len()).over("row")).filter(
            pl.col("place") < self.width
        )
        ranked = np.full((n_rows, self.width), -1, dtype=np.int64)
        scores = np.full((n_rows, self.width), np.nan)
        places = best.get_column("row").to_numpy(), best.get_column("place").to_numpy()
        ranked[places] = best.get_column("target").to_numpy()
        scores[places] = best.get_column("score").to_numpy()
        for row in np.flatnonzero((ranked < 0).any(axis=1)):
            have = ranked[row][ranked[row] >= 0]
            extra = [target for target in fallback if target not in set(have.tolist())]
            ranked[row] = np.r_[have, extra[: self.width - len(have)]]
        return ranked, scores

    def to_bytes(self) -> bytes:
        """The ranker as one JSON document (the scorer's boosters and the ranking settings); `load` reads it."""
        state = {"format_version": _FORMAT_VERSION, "kind": "link_ranker", "top_k": self.top_k,
                 "n_targets": self.n_targets, "objective": self.objective, "classes": self.classes_,
                 "candidates": self.candidates.to_dict(), "scorer": self.scorer.state()}  # fmt: skip
        return json.dumps(state).encode()

    @classmethod
    def load(cls, path: str | Path) -> LinkRanker:
        state = json.loads(Path(path).read_text())
        if state.get("kind") != "link_ranker" or state.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"{path}: not a link ranker of format {_FORMAT_VERSION}")
        candidates = state["candidates"]
        candidates["windows_days"] = tuple(candidates["windows_days"])
        ranker = cls(
            None, CandidateConfig(**candidates), state["top_k"], state["n_targets"], state["objective"]
        )
        ranker.classes_ = state.get("classes")
        ranker.scorer = GBDTModel.from_state(state["scorer"], f"{path} (scorer)")
        return ranker


def _group_sizes(rows: np.ndarray) -> np.ndarray:
    """Pairs per row, in order (pairs come sorted by row): LightGBM's query groups."""
    if len(rows) and np.any(np.diff(rows) < 0):
        raise ValueError("link prediction pairs must be sorted by row")
    return np.diff(np.flatnonzero(np.r_[True, rows[1:] != rows[:-1], True]))


def _candidate_map(rows: np.ndarray, labels: np.ndarray, k: int, name: str):
    """LightGBM feval: MAP@k over the rows' candidates (rows with no positive candidate left out)."""
    positives = np.bincount(rows, weights=labels)

    def evaluate(scores: np.ndarray, data: lgb.Dataset) -> tuple[str, float, bool]:
        order = np.lexsort((-scores, rows))
        ranked_rows, hits = rows[order], labels[order]
        starts = np.flatnonzero(np.r_[True, ranked_rows[1:] != ranked_rows[:-1]])
        sizes = np.diff(np.r_[starts, len(order)])
        place = np.arange(len(order)) - np.repeat(starts, sizes)  # 0-based position within the row
        hits_so_far = np.cumsum(hits)
        hits_so_far -= np.repeat(hits_so_far[starts] - hits[starts], sizes)  # restart the count per row
        precision = np.where((place < k) & (hits > 0), hits_so_far / (place + 1), 0.0)
        per_row = np.bincount(ranked_rows, weights=precision, minlength=len(positives))
        keep = positives > 0
        value = float(np.mean(per_row[keep] / np.minimum(positives[keep], k))) if keep.any() else 0.0
        return name, value, True

    return evaluate


def _features(pairs: pl.DataFrame) -> pl.DataFrame:
    return pairs.drop([name for name in PAIR_KEYS if name in pairs.columns])
