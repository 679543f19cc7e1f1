"""Prediction heads per task type: entity embedding -> output, the loss, and the user-facing prediction.

A `TaskSpec` carries what the head needs to know about the labels (classes, label range, the target table
of a ranking task); it is built once from the training split and saved with the model, so predictions at
serving time decode the same way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["TaskSpec", "make_head", "mlp"]

REGRESSION_TYPES = {"regression", "forecasting"}
RANKING_TYPES = {"ranking", "link_prediction"}
SUPPORTED = {"binary_classification", "multiclass_classification", "multilabel_classification"}
SUPPORTED |= REGRESSION_TYPES | RANKING_TYPES


@dataclass
class TaskSpec:
    """What a head needs to know about a task's labels.

    outputs: 1 (binary, regression), horizons (forecasting), classes, labels or target nodes (ranking).
    location/scale standardise regression targets; clamp bounds regression outputs (training percentiles).
    """

    task_type: str
    outputs: int = 1
    loss: str = "auto"
    classes: list = field(default_factory=list)
    location: float = 0.0
    scale: float = 1.0
    clamp: tuple[float, float] | None = None
    top_k: int = 10
    target_type: str | None = None  # link prediction: the node type whose nodes are the outputs

    def __post_init__(self) -> None:
        if self.task_type not in SUPPORTED:
            raise ValueError(f"task type {self.task_type!r} has no head; known: {sorted(SUPPORTED)}")
        if self.loss == "auto":
            self.loss = {"binary_classification": "bce", "multiclass_classification": "ce",
                         "multilabel_classification": "bce"}.get(self.task_type, "l1")  # fmt: skip
            if self.task_type in RANKING_TYPES:
                self.loss = "softmax"

    @classmethod
    def from_labels(
        cls, task_type: str, labels: np.ndarray, loss: str = "auto", clamp_percentiles=(2.0, 98.0), **extra
    ) -> TaskSpec:
        """Fit the spec on training labels (regression statistics, class list)."""
        if task_type in REGRESSION_TYPES:
            values = np.asarray(labels, dtype=np.float64)
            outputs = 1 if values.ndim == 1 else values.shape[1]
            low, high = np.percentile(values, clamp_percentiles) if clamp_percentiles else (None, None)
            return cls(task_type, outputs, loss, location=float(values.mean()),
                       scale=float(values.std()) or 1.0,
                       clamp=None if low is None else (float(low), float(high)), **extra)  # fmt: skip
        if task_type == "multiclass_classification":
            classes = sorted(set(np.asarray(labels).tolist()))
            return cls(task_type, len(classes), loss, classes=classes, **extra)
        if task_type == "multilabel_classification":
            return cls(task_type, int(np.asarray(labels).shape[1]), loss, **extra)
        if task_type in RANKING_TYPES and np.ndim(labels) == 2:  # multi-hot rows over the ranked targets
            return cls(task_type, int(np.shape(labels)[1]), loss, **extra)
        return cls(task_type, extra.pop("outputs", 1), loss, **extra)

    def to_dict(self) -> dict:
        return asdict(self)

    def class_index(self, labels) -> np.ndarray:
        """Multiclass labels -> indices into ``classes`` (-1 for a class unseen in training)."""
        lookup = {value: index for index, value in enumerate(self.classes)}
        return np.array([lookup.get(value, -1) for value in np.asarray(labels).tolist()], dtype=np.int64)


def mlp(channels: int, out: int, layers: int, dropout: float) -> nn.Sequential:
    """``layers`` linear maps (ReLU, dropout between), the last to ``out``."""
    modules: list[nn.Module] = []
    for _ in range(max(layers - 1, 0)):
        modules += [nn.Linear(channels, channels), nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*modules, nn.Linear(channels, out))


class TaskHead(nn.Module):
    """Maps the entity embedding to raw outputs; `loss` and `predict` interpret them per task type."""

    def __init__(self, spec: TaskSpec, channels: int, layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        self.spec = spec
        if spec.task_type in RANKING_TYPES:
            self.project = mlp(channels, channels, layers, dropout)
            self.targets = nn.Embedding(spec.outputs, channels)  # one vector per node of the target table
            self.bias = nn.Parameter(torch.zeros(spec.outputs))
            nn.init.normal_(self.targets.weight, std=channels**-0.5)
        else:
            self.project = mlp(channels, spec.outputs, layers, dropout)

    def forward(self, embedding: Tensor) -> Tensor:
        out = self.project(embedding)
        if self.spec.task_type in RANKING_TYPES:
            return out @ self.targets.weight.T + self.bias
        return (
            out.squeeze(-1)
            if self.spec.outputs == 1 and self.spec.task_type != "multiclass_classification"
            else out
        )

    def loss(self, out: Tensor, target: Tensor) -> Tensor:
        """Training loss; targets: 0/1 (binary), values (regression), class index, multi-hot (multilabel,
        ranking)."""
        spec, kind = self.spec, self.spec.loss
        if spec.task_type in REGRESSION_TYPES:
            scaled = (target.float() - spec.location) / spec.scale
            if kind == "huber":
                return F.huber_loss(out, scaled)
            if kind == "mse":
                return F.mse_loss(out, scaled)
            return F.l1_loss(out, scaled)
        if spec.task_type == "multiclass_classification":
            return F.cross_entropy(out, target.long(), ignore_index=-1)
        if spec.task_type in RANKING_TYPES and kind == "softmax":
            positives = target.float()
            weights = positives / positives.sum(dim=1, keepdim=True).clamp(min=1.0)
            has_positive = positives.sum(dim=1) > 0
            losses = -(weights * F.log_softmax(out, dim=1)).sum(dim=1)
            return losses[has_positive].mean() if has_positive.any() else out.sum() * 0.0
        return F.binary_cross_entropy_with_logits(out, target.float())

    @torch.no_grad()
    def predict(self, out: Tensor) -> Tensor:
        """User-facing output: probability of 1 / per class / per label, value (clamped), or top-k ids."""
        spec = self.spec
        out = out.float()
        if spec.task_type in REGRESSION_TYPES:
            value = out * spec.scale + spec.location
            return value.clamp(*spec.clamp) if spec.clamp else value
        if spec.task_type == "multiclass_classification":
            return out.softmax(dim=-1)
        if spec.task_type in RANKING_TYPES:
            return out.topk(min(spec.top_k, out.shape[-1]), dim=-1).indices
        return out.sigmoid()


def make_head(spec: TaskSpec, channels: int, layers: int = 1, dropout: float = 0.0) -> TaskHead:
    return TaskHead(spec, channels, layers, dropout)
