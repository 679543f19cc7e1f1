"""The trainer: fits a model on minibatches, early-stops on the tune metric, checkpoints every epoch.

It takes any iterable of `HeteroData` batches (the fetcher's, or a test's), so it knows nothing of Dagster
or the stores. Every epoch ends with a checkpoint holding the model, optimiser, scheduler, early-stopping
state and every RNG state; a restarted trainer resumes from it and reaches the same result as a run that
was never interrupted (the batches of epoch e depend only on the epoch seed the caller derives from e).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.autograd.profiler import record_function
from torch_geometric.data import HeteroData

from models.checkpoints import CheckpointStore, from_bytes, to_bytes
from models.heads import RANKING_TYPES
from models.metrics import compute_metrics, is_better, tune_metric

__all__ = [
    "PRECISIONS",
    "FitResult",
    "Predictions",
    "Trainer",
    "TrainerConfig",
    "resolve_device",
    "seed_everything",
]

CHECKPOINT = "last.pt"
PRECISIONS = ("auto", "tf32", "bf16", "fp32")
Callback = Callable[[int, dict], None]


@dataclass(frozen=True)
class TrainerConfig:
    """Optimisation settings. ``patience``: epochs without a better tune metric before stopping (0 = off).
    ``precision`` (CUDA only; the CPU always computes in fp32): ``auto``/``tf32`` = fp32 tensors with TF32
    matmuls, ``bf16`` = bf16 autocast (+ TF32), ``fp32`` = strict fp32. ``auto`` is TF32 because GNN steps on
    an H200 were launch-bound: autocast's casts cost more than bf16 matmuls saved (docs/benchmarks.md)."""

    epochs: int = 10
    lr: float = 0.005
    weight_decay: float = 0.0
    max_steps_per_epoch: int = 2000
    patience: int = 3
    grad_clip: float | None = 1.0
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    scheduler: str = "none"
    tune_metric: str | None = None
    top_k: int = 10

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")


@dataclass
class FitResult:
    tune_metric: str
    best_epoch: int
    best_value: float
    val_metrics: dict
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    resumed_from: int | None = None


@dataclass
class Predictions:
    """Per seed row (sorted by ``input_id``, the row in the split): model output, embedding, label."""

    input_id: np.ndarray
    output: np.ndarray
    embedding: np.ndarray
    label: np.ndarray | None


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (every device) so model init and dropout are reproducible."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Trainer:
    """Fits ``model`` (a module returning ``(output, embedding)`` with a ``head``) on a task's batches."""

    def __init__(
        self,
        model: nn.Module,
        config: TrainerConfig | None = None,
        checkpoints: CheckpointStore | None = None,
        callback: Callback | None = None,
    ) -> None:
        self.config = config or TrainerConfig()
        self.device = resolve_device(self.config.device)
        self.model = model.to(self.device)
        self.head = model.head
        self.task_type = self.head.spec.task_type
        self.metric = self.config.tune_metric or tune_metric(self.task_type, self.config.top_k)
        self.checkpoints = checkpoints
        self.callback = callback
        # fused: one kernel for every parameter's update on CUDA (a step launches hundreds of small kernels)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay,
                                          fused=self.device.type == "cuda")  # fmt: skip
        self.scheduler = (
            torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max(self.config.epochs, 1))
            if self.config.scheduler == "cosine"
            else None
        )
        self.bf16 = self._use_bf16()

    def _use_bf16(self) -> bool:
        if self.device.type != "cuda":
            return False
        tf32 = self.config.precision != "fp32"  # process-wide switches: set both ways
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        if self.config.precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise ValueError(
                f"precision 'bf16': {torch.cuda.get_device_name(self.device)} has no bf16; use tf32"
            )
        return self.config.precision == "bf16"

    def _autocast(self):
        if self.bf16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- batches ----------------------------------------------------------------------------------
    def _target(self, batch: HeteroData) -> torch.Tensor:
        return batch[self.model.seed_type].y

    def train_epoch(self, batches: Iterable[HeteroData]) -> tuple[float, int]:
        """One pass (at most ``max_steps_per_epoch`` steps); returns (mean loss, steps)."""
        self.model.train()
        total, steps = torch.zeros((), device=self.device), 0  # summed on the device: no sync per step
        for batch in batches:
            if steps >= self.config.max_steps_per_epoch:
                break
            with record_function("trainer.copy"):
                batch = batch.to(self.device, non_blocking=True)
            self.optimizer.zero_grad(set_to_none=True)
            with record_function("trainer.forward"):
                with self._autocast():
                    output, _ = self.model(batch)
                loss = self.head.loss(output.float(), self._target(batch))
            with record_function("trainer.backward"):
                loss.backward()
            with record_function("trainer.optimizer"):
                if self.config.grad_clip:
                    nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
                self.optimizer.step()
            total += loss.detach()
            steps += 1
        return float(total) / max(steps, 1), steps

    @torch.no_grad()
    def predict(self, batches: Iterable[HeteroData]) -> Predictions:
        """Outputs (probabilities, values or top-k ids) and embeddings of every seed, by ``input_id``."""
        self.model.eval()
        ids, outputs, embeddings, labels = [], [], [], []
        for batch in batches:
            batch = batch.to(self.device, non_blocking=True)
            with self._autocast():
                output, embedding = self.model(batch)
            seed_store = batch[self.model.seed_type]
            ids.append(seed_store.input_id.cpu())
            outputs.append(self.head.predict(output).cpu())
            embeddings.append(embedding.float().cpu())
            if "y" in seed_store:
                labels.append(seed_store.y.cpu())
        order = torch.cat(ids).argsort()
        return Predictions(
            input_id=torch.cat(ids)[order].numpy(),
            output=torch.cat(outputs)[order].numpy(),
            embedding=torch.cat(embeddings)[order].numpy(),
            label=torch.cat(labels)[order].numpy() if labels else None,
        )

    def evaluate(self, batches: Iterable[HeteroData]) -> tuple[dict, Predictions]:
        """Metrics of the task type on labelled batches, with the predictions they came from."""
        predictions = self.predict(batches)
        truth, output = self.metric_inputs(predictions)
        return compute_metrics(self.task_type, truth, output, k=self.config.top_k), predictions

    def metric_inputs(self, predictions: Predictions) -> tuple[np.ndarray | list, np.ndarray]:
        """Labels and outputs as `compute_metrics` reads them (ranking: target ids, misses padded to K)."""
        if predictions.label is None:
            raise ValueError("evaluate needs labelled batches (y on the seed node type)")
        truth, output, k = predictions.label, predictions.output, self.config.top_k
        if self.task_type in RANKING_TYPES:  # multi-hot rows -> the relevant target ids
            truth = [np.flatnonzero(row) for row in truth]
            if output.shape[1] < k:  # fewer targets than K: the missing places are misses
                output = np.pad(output, ((0, 0), (0, k - output.shape[1])), constant_values=-1)
        return truth, output

    # -- fitting ----------------------------------------------------------------------------------
    def fit(
        self,
        train_epoch: Callable[[int], Iterable[HeteroData]],
        val_batches: Callable[[], Iterable[HeteroData]],
    ) -> FitResult:
        """Train for up to ``epochs`` epochs (``train_epoch(e)`` gives epoch e's batches), validating after
        each; resumes from the last checkpoint when one exists; ends with the best epoch's weights."""
        started = time.perf_counter()
        state = self._restore()
        resumed_from = state["epoch"] if state["epoch"] >= 0 else None
        if resumed_from is None:
            seed_everything(self.config.seed)
        for epoch in range(state["epoch"] + 1, self.config.epochs):
            if state["stopped"]:
                break
            loss, steps = self.train_epoch(train_epoch(epoch))
            if self.scheduler is not None:
                self.scheduler.step()
            metrics, _ = self.evaluate(val_batches())
            value = metrics.get(self.metric, float("nan"))
            record = {
                "epoch": epoch,
                "loss": loss,
                "steps": steps,
                **{f"val_{k}": v for k, v in metrics.items()},
            }
            state["history"].append(record)
            state["steps"] += steps
            if is_better(self.metric, value, state["best_value"]):
                state.update(best_value=value, best_epoch=epoch, best_metrics=metrics, bad_epochs=0)
                state["best_weights"] = {
                    k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()
                }
            else:
                state["bad_epochs"] += 1
            state["epoch"] = epoch
            state["stopped"] = bool(self.config.patience) and state["bad_epochs"] >= self.config.patience
            self._checkpoint(state)
            if self.callback is not None:
                self.callback(epoch, {"loss": loss, **metrics})
        if state["best_weights"] is not None:
            self.model.load_state_dict(state["best_weights"])
        return FitResult(
            tune_metric=self.metric,
            best_epoch=state["best_epoch"],
            best_value=state["best_value"] if state["best_value"] is not None else float("nan"),
            val_metrics=state["best_metrics"],
            history=state["history"],
            seconds=time.perf_counter() - started,
            steps=state["steps"],
            resumed_from=resumed_from,
        )

    def _fresh_state(self) -> dict:
        return {"epoch": -1, "best_value": None, "best_epoch": -1, "best_metrics": {}, "best_weights": None,
                "bad_epochs": 0, "stopped": False, "history": [], "steps": 0}  # fmt: skip

    def _checkpoint(self, state: dict) -> None:
        if self.checkpoints is None:
            return
        payload = {
            "trainer": state,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "rng": _rng_state(),
            "config": asdict(self.config),
        }
        self.checkpoints.save(CHECKPOINT, to_bytes(payload))

    def _restore(self) -> dict:
        data = self.checkpoints.load(CHECKPOINT) if self.checkpoints is not None else None
        if data is None:
            return self._fresh_state()
        payload = from_bytes(data)
        _check_same_parameters(self.model.state_dict(), payload["model"], self.checkpoints)
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.scheduler is not None and payload["scheduler"] is not None:
            self.scheduler.load_state_dict(payload["scheduler"])
        _set_rng_state(payload["rng"])
        return payload["trainer"]


def _check_same_parameters(expected: dict, saved: dict, where: object) -> None:
    """A checkpoint resumes only the model that wrote it: refuse one whose parameters differ, naming them."""
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    reshaped = sorted(
        name for name in set(expected) & set(saved) if expected[name].shape != saved[name].shape
    )
    if missing or unexpected or reshaped:
        raise ValueError(
            f"the checkpoint in {where} was written by a different model (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}, other shapes {reshaped[:3]}), e.g. by an older version of the model code: delete "
            "it to train from scratch, or train under another run key"
        )
