"""Hyperparameter search spaces per task type and run mode (fast / normal / best).

A trial's parameters are a flat dict with the field names of the model run config
(`training.run.ModelRunConfig`), so a trial trains exactly like a one-off model materialisation.
The sampling configuration (batch size, fanouts, uniform or most recent neighbours) is drawn from a few named
presets, apart from the model: trials that share a preset and seed share the fetcher's cached minibatches.

Defaults (documented in docs/automl.md):

============  ========  =========================  ==========================  ======================
mode          trials    GNN convs                  channels / layers           epochs (GNN)
============  ========  =========================  ==========================  ======================
fast          8         sage                       32, 64 / 2                  2
normal        32        sage, gin, gatv2           64, 128 / 2                 5 - 10
best          100       sage, gin, gatv2, hgt      64, 128, 256 / 2, 3         10 - 20
============  ========  =========================  ==========================  ======================
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna

from models.gbdt import SUPPORTED_TASK_TYPES, GBDTConfig
from models.metrics import metric_direction, tune_metric

__all__ = [
    "GBDT_TASKS",
    "MODES",
    "PRESET_STRATEGIES",
    "SAMPLING_PRESETS",
    "SearchSpace",
    "preset_params",
    "sampling_key",
    "search_space",
]

MODES = ("fast", "normal", "best")
# the GBDT baseline trains these: GBDTModel directly, link prediction as a pair scorer (models/gbdt_links.py)
GBDT_TASKS = set(SUPPORTED_TASK_TYPES) | {"link_prediction"}

# Named (batch size, fanouts per hop) presets. Few on purpose: trials on one preset share cached batches.
SAMPLING_PRESETS: dict[str, tuple[int, tuple[int, ...]]] = {
    "narrow2": (512, (8, 4)),
    "medium2": (512, (16, 8)),
    "wide2": (512, (32, 16)),
    "large_batch2": (1024, (16, 8)),
    "medium3": (512, (16, 8, 4)),
    # link prediction: many of the entity's own links in the first hop (its history; bench_links.py),
    # one hop on (the linked targets)
    "history2": (256, (256, 4)),
    # every task: the same shapes as medium2 / wide2, keeping each hop's most recent neighbours
    "recent2": (512, (16, 8)),
    "recent_wide2": (512, (32, 16)),
}
HISTORY_PRESETS = ("history2",)  # searched only for link prediction
# Presets whose sampler keeps each hop's most recent neighbours instead of a uniform draw. An entity's latest
# links predict its next ones (baskets, 150 households: GNN test MAP@10 0.1256 -> 0.1442), and its latest
# results its next (rel-f1 with each row seeing its own anchor's database: top3 val 82.7 -> 89.6, dnf 77.4 ->
# 80.1; docs/benchmarks.md).
PRESET_STRATEGIES = {"history2": "last", "recent2": "last", "recent_wide2": "last"}


@dataclass(frozen=True)
class SearchSpace:
    """What a study of one mode explores, and its default budgets."""

    mode: str
    task_type: str
    families: tuple[str, ...]
    convs: tuple[str, ...]
    channels: tuple[int, ...]
    layers: tuple[int, ...]
    aggrs: tuple[str, ...]
    sampling: tuple[str, ...]
    epochs: tuple[int, int]
    lr: tuple[float, float]
    weight_decay: tuple[float, float]
    dropout: tuple[float, float]
    # whether seeds also see the anchor's season and their view's staleness
    anchor_encodings: tuple[bool, ...]
    max_steps_per_epoch: int
    gbdt_trees: tuple[int, int]
    gbdt_leaves: tuple[int, int]
    n_trials: int
    timeout_minutes: float
    stalenesses: tuple[bool, ...] = (False,)  # train on stale views too (frozen regime; set by the study)

    @property
    def metric(self) -> str:
        return tune_metric(self.task_type)

    @property
    def direction(self) -> str:
        return metric_direction(self.metric)

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Draw one trial's parameters (family first; the rest conditional on it)."""
        family = _choice(trial, "family", self.families)
        drawn = {}
        if len(self.stalenesses) > 1:
            drawn["simulate_staleness"] = _choice(trial, f"simulate_staleness_{family}", self.stalenesses)
        if family == "gbdt":
            return {
                **drawn,
                "family": "gbdt",
                "gbdt_trees": trial.suggest_int("gbdt_trees", *self.gbdt_trees, log=True),
                "gbdt_leaves": trial.suggest_int("gbdt_leaves", *self.gbdt_leaves, log=True),
                "gbdt_learning_rate": trial.suggest_float("gbdt_learning_rate", 0.01, 0.2, log=True),
            }
        layers = _choice(trial, "layers", self.layers)
        presets = [name for name in self.sampling if len(SAMPLING_PRESETS[name][1]) == layers]
        preset = _choice(trial, f"sampling_{layers}", tuple(presets))
        return {
            **drawn,
            "family": "gnn",
            "conv": _choice(trial, "conv", self.convs),
            "channels": _choice(trial, "channels", self.channels),
            "layers": layers,
            "aggr": _choice(trial, "aggr", self.aggrs),
            "dropout": _float(trial, "dropout", self.dropout, log=False),
            "absolute_time": _choice(trial, "absolute_time", self.anchor_encodings),
            "lr": _float(trial, "lr", self.lr, log=True),
            "weight_decay": _float(trial, "weight_decay", self.weight_decay, log=True),
            "epochs": trial.suggest_int("epochs", *self.epochs)
            if self.epochs[0] < self.epochs[1]
            else self.epochs[0],
            **preset_params(preset),
            "max_steps_per_epoch": self.max_steps_per_epoch,
        }

    def seed_trials(self) -> list[dict[str, Any]]:
        """The first trials of a new study: one per family, and for the GNN one per sampling preset, so TPE
        starts from every family and preset instead of starving one (``Study.enqueue_trial`` parameters, enqueued
        once before slots start by `training.hpo.enqueue_seed_trials`; the rest of each trial is drawn as usual)."""
        seeds: list[dict[str, Any]] = []
        for family in self.families:
            if family == "gbdt":
                seeds.append(self.default_gbdt())
                continue
            if family != "gnn":
                seeds.append({"family": family})
                continue
            for preset in self.sampling:
                layers = len(SAMPLING_PRESETS[preset][1])
                if layers in self.layers:
                    seeds.append({"family": "gnn", "layers": layers, f"sampling_{layers}": preset})
        # alternate families, so a small budget still reaches each family early
        by_family = [[seed for seed in seeds if seed["family"] == family] for family in self.families]
        return [seed for group in itertools.zip_longest(*by_family) for seed in group if seed is not None]

    def default_gbdt(self) -> dict[str, Any]:
        """The GBDT seed trial: the model's own defaults (`models.gbdt.GBDTConfig`: 31 leaves, learning rate
        0.03) with the space's most trees, as early stopping on validation keeps only the rounds that help. A
        drawn seed could start the family at 100 trees of rate 0.01 and leave it looking weak all study."""
        defaults = GBDTConfig()
        low, high = self.gbdt_leaves
        return {"family": "gbdt", "gbdt_trees": self.gbdt_trees[1],
                "gbdt_leaves": min(max(defaults.num_leaves, low), high), "gbdt_learning_rate": defaults.learning_rate}  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _choice(trial: optuna.Trial, name: str, options: tuple) -> Any:
    """A categorical draw; a single option is fixed rather than recorded as a parameter."""
    return options[0] if len(options) == 1 else trial.suggest_categorical(name, list(options))


def _float(trial: optuna.Trial, name: str, bounds: tuple[float, float], log: bool) -> float:
    low, high = bounds
    return low if low == high else trial.suggest_float(name, low, high, log=log)


def search_space(
    task_type: str,
    mode: str = "fast",
    families: tuple[str, ...] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SearchSpace:
    """The space for ``task_type`` in ``mode``; ``families`` narrows the model families, ``overrides``
    replaces any field (e.g. ``{"n_trials": 12}``). The GBDT baseline joins only for task types it supports.
    """
    if mode not in MODES:
        raise ValueError(f"unknown search mode {mode!r}; choose one of {MODES}")
    tune_metric(task_type)  # validates the task type with the list of known ones
    supported = ("gnn", "gbdt") if task_type in GBDT_TASKS else ("gnn",)
    chosen = tuple(families or supported)
    unsupported = [family for family in chosen if family not in supported]
    if unsupported:
        raise ValueError(
            f"model families {unsupported} cannot train a {task_type} task; choose from {supported}"
        )
    base = {
        "fast": dict(convs=("sage",), channels=(32, 64), layers=(2,), aggrs=("sum", "mean"),
                     sampling=("narrow2", "medium2", "recent2"), epochs=(2, 2), lr=(1e-3, 1e-2), weight_decay=(1e-6, 1e-6),
                     dropout=(0.0, 0.0), anchor_encodings=(False,), max_steps_per_epoch=200, gbdt_trees=(100, 400), gbdt_leaves=(15, 63),
                     n_trials=8, timeout_minutes=30.0),
        "normal": dict(convs=("sage", "gin", "gatv2"), channels=(64, 128), layers=(2,),
                       aggrs=("sum", "mean", "max"),
                       sampling=("narrow2", "medium2", "wide2", "large_batch2", "recent2", "recent_wide2"),
                       epochs=(5, 10), lr=(3e-4, 1e-2), weight_decay=(1e-7, 1e-3), dropout=(0.0, 0.3),
                       anchor_encodings=(False, True),
                       max_steps_per_epoch=1000, gbdt_trees=(200, 2000), gbdt_leaves=(15, 127), n_trials=32,
                       timeout_minutes=240.0),
        "best": dict(convs=("sage", "gin", "gatv2", "hgt"), channels=(64, 128, 256), layers=(2, 3),
                     aggrs=("sum", "mean", "max"),
                     sampling=tuple(name for name in SAMPLING_PRESETS if name not in HISTORY_PRESETS), epochs=(10, 20),
                     lr=(1e-4, 1e-2), weight_decay=(1e-7, 1e-3), dropout=(0.0, 0.5), anchor_encodings=(False, True),
                     max_steps_per_epoch=2000,
                     gbdt_trees=(500, 4000), gbdt_leaves=(15, 255), n_trials=100, timeout_minutes=1440.0),
    }[mode]  # fmt: skip
    if task_type == "link_prediction":  # the RevisitScorer ranks what the first hop shows of the history
        base["sampling"] = (*base["sampling"], *HISTORY_PRESETS)
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(base) - {"stalenesses"})
    if unknown:
        raise ValueError(f"unknown search-space keys {unknown} in the study's `space`; known: {sorted(base)}")
    for name in ("epochs", "gbdt_trees", "gbdt_leaves", "channels", "layers"):
        values = overrides.get(name, ())
        if any(not isinstance(value, int) or value < 1 for value in values):
            raise ValueError(
                f"search space `{name}` is {list(values)}; every value must be a whole number >= 1"
            )
    for name in ("n_trials", "max_steps_per_epoch", "timeout_minutes"):
        if name in overrides and overrides[name] <= 0:
            raise ValueError(f"search space `{name}` is {overrides[name]}; set it above 0")
    fields = {"mode": mode, "task_type": task_type, "families": chosen, **base, **overrides}
    return SearchSpace(**fields)


def preset_params(preset: str) -> dict[str, Any]:
    """A sampling preset as the trial parameters it sets: batch size, fanouts per hop and strategy."""
    batch_size, fanouts = SAMPLING_PRESETS[preset]
    return {"batch_size": batch_size, "fanouts": list(fanouts),
            "sampling_strategy": PRESET_STRATEGIES.get(preset, "uniform")}  # fmt: skip


def sampling_key(params: Mapping[str, Any]) -> tuple:
    """What a trial's minibatches depend on besides the data: trials with equal keys share cached batches."""
    if params.get("family", "gnn") != "gnn":
        return ()
    strategy = params.get("sampling_strategy", "uniform")
    return (params["batch_size"], tuple(params["fanouts"]), strategy, params.get("seed", 0))
