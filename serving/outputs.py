"""The columns a prediction row has, by task type, and the binary decision threshold chosen on validation.

Every row: ``entity`` (the FOR EACH key, in the user's own values), ``anchor_time`` (UTC), the task's
columns, then ``model_version``, ``data_version`` and ``data_age_days`` (how old the newest row visible at
the anchor was: anchors after the data ends are normal, and this says by how much).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

__all__ = ["OutputContext", "choose_threshold", "output_schema", "prediction_frame"]

TOP_CLASSES = 3
MULTILABEL_THRESHOLD = 0.5


@dataclass
class OutputContext:
    """What turns raw outputs into a user's values: class names, target keys, threshold and versions."""

    task_type: str
    entity_dtype: pl.DataType
    classes: list | None = None  # multiclass / multilabel / ranking: what each output column means
    target_keys: pl.Series | None = None  # link prediction: the target table's keys in node-id order
    threshold: float | None = None  # binary: predicted_class = score >= threshold
    model_version: str = ""
    data_version: str = ""

    @property
    def label_dtype(self) -> pl.DataType:
        if self.target_keys is not None:
            return self.target_keys.dtype
        return pl.Series(self.classes or []).dtype if self.classes else pl.String


def output_schema(context: OutputContext) -> dict[str, pl.DataType]:
    """The columns (and types) of a predictions file for the task, in order."""
    task = context.task_type
    columns: dict[str, pl.DataType] = {"entity": context.entity_dtype,
                                       "anchor_time": pl.Datetime("us", "UTC")}  # fmt: skip
    if task == "binary_classification":
        columns |= {"probability": pl.Float64, "score": pl.Float64, "predicted_class": pl.Int8}
    elif task == "regression":
        columns |= {"value": pl.Float64}
    elif task == "forecasting":
        columns |= {"values": pl.List(pl.Float64)}
    elif task == "multiclass_classification":
        columns |= {"predicted_class": context.label_dtype, "top_classes": pl.List(context.label_dtype),
                    "top_probabilities": pl.List(pl.Float64)}  # fmt: skip
    elif task == "multilabel_classification":
        columns |= {"labels": pl.List(context.label_dtype), "label_scores": pl.List(pl.Float64)}
    else:  # ranking, link_prediction
        columns |= {"targets": pl.List(context.label_dtype), "scores": pl.List(pl.Float64)}
    return columns | {"model_version": pl.String, "data_version": pl.String, "data_age_days": pl.Float64}


def prediction_frame(
    context: OutputContext,
    entities: pl.Series,
    anchors: np.ndarray,
    outputs: np.ndarray,
    scores: np.ndarray | None,
    data_age_days: np.ndarray,
    probabilities: np.ndarray | None = None,
) -> pl.DataFrame:
    """One chunk of prediction rows. ``probabilities``: a binary blend's mean member probability (else the
    outputs are the probabilities)."""
    task, rows = context.task_type, len(entities)
    columns: dict[str, object] = {"entity": entities.alias("entity"),
                                  "anchor_time": pl.from_epoch(pl.Series(anchors.astype(np.int64)), "s")}  # fmt: skip
    if task == "binary_classification":
        score = np.asarray(outputs, dtype=np.float64).reshape(rows)
        threshold = 0.5 if context.threshold is None else context.threshold
        columns |= {"probability": score if probabilities is None else probabilities, "score": score,
                    "predicted_class": (score >= threshold).astype(np.int8)}  # fmt: skip
    elif task == "regression":
        columns["value"] = np.asarray(outputs, dtype=np.float64).reshape(rows)
    elif task == "forecasting":
        columns["values"] = np.asarray(outputs, dtype=np.float64).reshape(rows, -1).tolist()
    elif task == "multiclass_classification":
        probability = np.asarray(outputs, dtype=np.float64).reshape(rows, -1)
        order = np.argsort(-probability, axis=1, kind="stable")[:, :TOP_CLASSES]
        names = np.asarray(context.classes, dtype=object)
        columns |= {"predicted_class": pl.Series(names[order[:, 0]].tolist() if rows else [],
                                                 dtype=context.label_dtype),
                    "top_classes": names[order].tolist(),
                    "top_probabilities": np.take_along_axis(probability, order, axis=1).tolist()}  # fmt: skip
    elif task == "multilabel_classification":
        probability = np.asarray(outputs, dtype=np.float64).reshape(rows, -1)
        names = np.asarray(context.classes, dtype=object)
        above = probability >= MULTILABEL_THRESHOLD
        columns |= {"labels": [names[row].tolist() for row in above],
                    "label_scores": [values[row].tolist() for values, row in zip(probability, above, strict=True)]}  # fmt: skip
    else:
        indices = np.asarray(outputs, dtype=np.int64).reshape(rows, -1)
        lookup = context.target_keys if context.target_keys is not None else pl.Series(context.classes)
        columns["targets"] = [lookup.gather(row[row >= 0]).to_list() for row in indices]
        columns["scores"] = (
            [None] * rows
            if scores is None
            else np.asarray(scores, dtype=np.float64).reshape(rows, -1).tolist()
        )
    columns |= {"model_version": [context.model_version] * rows, "data_version": [context.data_version] * rows,
                "data_age_days": np.asarray(data_age_days, dtype=np.float64)}  # fmt: skip
    schema = output_schema(context)
    frame = pl.DataFrame({name: pl.Series(name, values) if not isinstance(values, pl.Series) else values
                          for name, values in columns.items()}, strict=False)  # fmt: skip
    return (
        frame.with_columns(pl.col("anchor_time").dt.replace_time_zone("UTC"))
        .cast(schema)
        .select(list(schema))
    )


def choose_threshold(labels: np.ndarray, scores: np.ndarray, source: str) -> dict:
    """The score at which predicting positive maximises F1 on validation rows (ties: the higher threshold)."""
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    positives = labels.sum()
    if len(scores) == 0 or positives == 0:
        return {
            "value": 0.5,
            "rule": "no positive validation rows: 0.5",
            "source": source,
            "rows": len(scores),
        }
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    true_positives = np.cumsum(sorted_labels)
    predicted = np.arange(1, len(scores) + 1)
    last_of_tie = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]  # a threshold keeps whole ties
    f1 = np.where(last_of_tie, 2 * true_positives / (predicted + positives), -1.0)
    best = int(np.argmax(f1))
    return {"value": float(sorted_scores[best]), "rule": "maximises F1 on validation rows", "source": source,
            "f1": float(f1[best]), "rows": len(scores), "positive_rate": float(positives / len(scores))}  # fmt: skip
