"""List-valued labels (``LIST_DISTINCT`` targets, multicategorical columns) as the multi-hot rows heads train on.

A training table stores such a label as a list per row: target-table keys for link prediction, category
values for multilabel classification and category ranking. The head needs one 0/1 column per output: the
target table's nodes in node-id order (so a ranked output is a node id), or the categories seen in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from stores.fetcher import TrainingSplit

__all__ = ["LIST_TASKS", "MAX_MULTI_HOT_BYTES", "LabelVocabulary", "label_vocabulary", "multi_hot_splits"]

LIST_TASKS = {"multilabel_classification", "ranking", "link_prediction"}
MAX_MULTI_HOT_BYTES = 4 * 2**30  # dense 0/1 rows for all seeds of a split; beyond this, refuse with the fix


@dataclass(frozen=True)
class LabelVocabulary:
    """Output column j of the head means ``values[j]`` (a target-table key, or a category)."""

    task_type: str
    values: list

    def multi_hot(self, labels: Sequence, where: str) -> tuple[np.ndarray, int]:
        """Rows of 0/1 (uint8) over the vocabulary, and how many listed values it does not contain."""
        size = len(labels) * len(self.values)
        if size > MAX_MULTI_HOT_BYTES:
            raise ValueError(
                f"{where}: {len(labels):,} rows x {len(self.values):,} possible targets need {size / 2**30:.1f} GiB "
                "of multi-hot labels: filter the entities (WHERE) or the targets of the query"
            )
        index = {value: position for position, value in enumerate(self.values)}
        rows = np.zeros((len(labels), len(self.values)), dtype=np.uint8)
        unknown = 0
        for row, listed in enumerate(labels):
            for value in [] if listed is None else listed:
                position = index.get(value)
                if position is None:
                    unknown += 1
                else:
                    rows[row, position] = 1
        return rows, unknown


def label_vocabulary(
    task_type: str, train_labels: Sequence, target_keys: pl.Series | None = None
) -> LabelVocabulary:
    """Link prediction: the target table's keys in node-id order (``target_keys``, required). Otherwise the
    categories that occur in the training labels, sorted (a category first seen later cannot be predicted)."""
    if task_type == "link_prediction":
        if target_keys is None:
            raise ValueError("link prediction needs the target table's keys to build its outputs")
        return LabelVocabulary(task_type, target_keys.to_list())
    seen = {
        _plain(value)
        for listed in train_labels
        if listed is not None
        for value in listed
        if value is not None
    }
    if not seen:
        raise ValueError(f"{task_type}: no training row lists any value, so there is nothing to predict")
    return LabelVocabulary(task_type, sorted(seen, key=lambda value: (str(type(value)), value)))


def multi_hot_splits(
    splits: dict[str, TrainingSplit], vocabulary: LabelVocabulary, log=print
) -> dict[str, TrainingSplit]:
    """The same splits with list labels replaced by multi-hot rows over ``vocabulary``."""
    encoded = {}
    for name, split in splits.items():
        rows, unknown = vocabulary.multi_hot(list(split.labels), f"{split.name}")
        if unknown:
            log(
                f"{name}: {unknown} listed value(s) are not among the {len(vocabulary.values)} outputs (ignored)"
            )
        encoded[name] = TrainingSplit(
            split.name, split.node_type, split.seeds, split.seed_times, rows, split.anchor_times
        )
    return encoded


def _plain(value):
    """numpy scalars (what list columns hold after ``to_numpy``) as Python values, for JSON and sorting."""
    return value.item() if isinstance(value, np.generic) else value
