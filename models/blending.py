"""Blending two models' outputs on the same rows, and whether validation prefers the blend to either alone.

A GNN and a GBDT err on different rows; on rel-f1 driver-dnf the rank average of the two scored higher on
validation than either for every seed tried (docs/benchmarks.md). Binary scores are averaged as ranks (the two
families' probabilities are calibrated differently and AUROC reads only the order); regression values and
class probabilities are averaged as they are. Ranked lists (ranking, link prediction) are not blended.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Mapping, Sequence

import numpy as np

from models.metrics import compute_metrics, is_better, tune_metric
from models.uncertainty import ScoredRows

__all__ = [
    "BLENDABLE",
    "blend_outputs",
    "blend_report",
    "check_same_rows",
    "mid_rank_quantile",
    "scored_rows_bytes",
    "scored_rows_from_bytes",
]

BLENDABLE = (
    "binary_classification",
    "regression",
    "forecasting",
    "multiclass_classification",
    "multilabel_classification",
)


def blend_outputs(
    task_type: str, outputs: Sequence[np.ndarray], references: Sequence[np.ndarray] | None = None
) -> np.ndarray:
    """The equal-weight blend of several models' outputs for the same rows.

    Binary scores are blended as quantiles: each member's score becomes its mid-rank among that member's
    ``references`` (default: the rows themselves, i.e. the rank average). With fixed references (the members'
    validation scores) a row's blend no longer depends on which other rows are scored with it, so served
    predictions equal the scores a validation run recorded for the same rows.
    """
    if task_type not in BLENDABLE:
        raise ValueError(f"{task_type} outputs are ranked lists: blend one of {BLENDABLE}")
    arrays = [np.asarray(output, dtype=np.float64) for output in outputs]
    if task_type == "binary_classification":
        references = arrays if references is None else [np.asarray(r, dtype=np.float64) for r in references]
        arrays = [
            mid_rank_quantile(array, reference) for array, reference in zip(arrays, references, strict=True)
        ]
    return np.mean(arrays, axis=0)


def mid_rank_quantile(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(references below + (references equal + 1) / 2) / len(reference), at most 1: ``rankdata(values) / n``
    when the reference is ``values`` itself, and a fixed monotone map of any other score into [0, 1] (a score
    above every reference would otherwise map to (n + 1/2) / n, which no metric reads as a probability)."""
    ordered = np.sort(np.asarray(reference, dtype=np.float64))
    below = np.searchsorted(ordered, values, side="left")
    equal = np.searchsorted(ordered, values, side="right") - below
    return np.minimum((below + (equal + 1) / 2) / max(len(ordered), 1), 1.0)


def blend_report(task_type: str, members: Mapping[str, ScoredRows], *, k: int = 10) -> dict:
    """The tune metric of each member and of their blend on the same scored rows (a validation split), and
    whether the blend beats the best member."""
    check_same_rows(members)
    rows = list(members.values())
    first = rows[0]
    metric = tune_metric(task_type, k)
    values = {name: float(compute_metrics(task_type, scored.labels, scored.outputs, k=k)[metric])
              for name, scored in members.items()}  # fmt: skip
    blended = blend_outputs(task_type, [scored.outputs for scored in rows])
    blend = float(compute_metrics(task_type, first.labels, blended, k=k)[metric])
    best, best_name = None, None
    for name, value in values.items():
        if is_better(metric, value, best):
            best, best_name = value, name
    return {"metric": metric, "members": values, "blend": blend, "best_member": best_name,
            "blend_is_better": is_better(metric, blend, best)}  # fmt: skip


def check_same_rows(members: Mapping[str, ScoredRows]) -> None:
    """Blending is row by row: every member must have scored the same rows of the same entities in order."""
    first_name, first = next(iter(members.items()))
    for name, other in members.items():
        same = len(other.groups) == len(first.groups) and np.array_equal(other.groups, first.groups)
        if not same or not np.array_equal(np.asarray(other.labels), np.asarray(first.labels)):
            raise ValueError(f"{name} scored other rows than {first_name}: blend only the same split")


def scored_rows_bytes(scored: Mapping[str, ScoredRows]) -> bytes | None:
    """Splits' labels, outputs and entities as one .npz; ranked labels (each row's relevant ids) are stored
    as their values and row offsets. None when labels are other objects."""
    arrays = {}
    for split, rows in scored.items():
        groups = rows.groups if rows.groups.dtype != object else rows.groups.astype(str)
        arrays.update({f"{split}.outputs": np.asarray(rows.outputs), f"{split}.groups": groups})
        if isinstance(rows.labels, list):  # ranked labels: the relevant ids of each row
            lengths = [len(ids) for ids in rows.labels]
            arrays[f"{split}.label_values"] = np.concatenate([np.asarray(ids, np.int64) for ids in rows.labels]
                                                             or [np.zeros(0, np.int64)])  # fmt: skip
            arrays[f"{split}.label_offsets"] = np.r_[0, np.cumsum(lengths)].astype(np.int64)
            continue
        labels = np.asarray(rows.labels)
        if labels.dtype == object:
            return None
        arrays[f"{split}.labels"] = labels
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def scored_rows_from_bytes(data: bytes) -> dict[str, ScoredRows]:
    with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
        splits = sorted({name.split(".")[0] for name in arrays.files})
        return {split: ScoredRows(_labels(arrays, split), arrays[f"{split}.outputs"], arrays[f"{split}.groups"])
                for split in splits}  # fmt: skip


def _labels(arrays, split: str) -> np.ndarray | list[np.ndarray]:
    if f"{split}.labels" in arrays.files:
        return arrays[f"{split}.labels"]
    values, offsets = arrays[f"{split}.label_values"], arrays[f"{split}.label_offsets"]
    return [values[start:stop] for start, stop in itertools.pairwise(offsets)]
