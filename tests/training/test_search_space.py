"""Search spaces: every draw is a valid model run config, sampling comes from shared presets."""

from __future__ import annotations

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.gnn import GNNConfig
from models.metrics import TASK_TYPES
from stores.sampler import SamplerConfig
from training.run import ModelRunConfig
from training.search_space import MODES, PRESET_STRATEGIES, SAMPLING_PRESETS, sampling_key, search_space

TASKS = ["binary_classification", "regression", "multiclass_classification", "multilabel_classification",
         "link_prediction"]  # fmt: skip


def draws(space, count: int, seed: int) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed), direction=space.direction)
    params = []
    for _ in range(count):
        trial = study.ask()
        params.append(space.suggest(trial))
        study.tell(trial, 0.0)
    return params


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(MODES), st.sampled_from(TASKS), st.integers(0, 10_000))
def test_every_draw_is_a_valid_run_config(mode, task_type, seed):
    space = search_space(task_type, mode)
    for params in draws(space, 6, seed):
        config = ModelRunConfig(**params)
        assert config.family in space.families
        if config.family == "gnn":
            GNNConfig(conv=config.conv, channels=config.channels, layers=config.layers, aggr=config.aggr)
            assert len(config.fanouts) == config.layers
            assert (config.batch_size, tuple(config.fanouts)) in SAMPLING_PRESETS.values()
            SamplerConfig(tuple(config.fanouts), config.sampling_strategy)  # a strategy the sampler knows
            assert space.epochs[0] <= config.epochs <= space.epochs[1]
            assert space.lr[0] <= config.lr <= space.lr[1]
            assert config.conv in space.convs and config.channels in space.channels


def test_gbdt_joins_every_task_type_it_can_train():
    for task_type in TASK_TYPES:  # link prediction as a pair scorer, the rest through GBDTModel
        assert search_space(task_type).families == ("gnn", "gbdt"), task_type
    with pytest.raises(ValueError, match="unknown task type 'nope'"):
        search_space("nope", families=("gbdt",))


def test_link_prediction_also_searches_wide_first_hops_of_history():
    for mode in MODES:
        assert "history2" in search_space("link_prediction", mode).sampling
        assert "history2" not in search_space("binary_classification", mode).sampling
    _, fanouts = SAMPLING_PRESETS["history2"]
    assert len(fanouts) == 2 and fanouts[0] > max(
        f[0] for n, (_, f) in SAMPLING_PRESETS.items() if n != "history2"
    )
    # the history preset keeps the entity's most recent links; its trials cache their own batches
    params = draws(search_space("link_prediction", "best", families=("gnn",)), 60, seed=1)
    history = [p for p in params if tuple(p["fanouts"]) == fanouts]
    others = [p for p in params if tuple(p["fanouts"]) != fanouts]
    assert history and others and PRESET_STRATEGIES["history2"] == "last"
    assert {p["sampling_strategy"] for p in history} == {"last"}
    uniform = {**history[0], "sampling_strategy": "uniform"}
    assert sampling_key(uniform) != sampling_key(history[0])


def test_every_task_also_searches_most_recent_neighbours():
    """The recent presets repeat uniform presets' shapes with the most recent neighbours: a draw's strategy is
    its preset's, and the two streams of one shape never share cached batches."""
    for mode in MODES:
        assert "recent2" in search_space("binary_classification", mode).sampling
    params = draws(search_space("regression", "normal", families=("gnn",)), 80, seed=2)
    shapes = {(p["batch_size"], tuple(p["fanouts"])) for p in params if p["sampling_strategy"] == "last"}
    assert SAMPLING_PRESETS["recent2"] in shapes
    same_shape = [p for p in params if (p["batch_size"], tuple(p["fanouts"])) == SAMPLING_PRESETS["recent2"]]
    assert {p["sampling_strategy"] for p in same_shape} == {"uniform", "last"}
    assert len({sampling_key(p) for p in same_shape}) == 2


def test_modes_grow_and_overrides_apply():
    fast, normal, best = (search_space("regression", mode) for mode in MODES)
    assert fast.n_trials < normal.n_trials < best.n_trials
    assert set(fast.convs) < set(normal.convs) < set(best.convs)
    assert fast.direction == "minimize" and search_space("binary_classification").direction == "maximize"
    assert search_space("regression", overrides={"n_trials": 3}).n_trials == 3
    with pytest.raises(ValueError, match="unknown search mode 'quick'"):
        search_space("regression", "quick")
    with pytest.raises(ValueError, match="unknown task type 'clustering'"):
        search_space("clustering")


def test_trials_on_one_sampling_preset_share_a_batch_key():
    params = draws(search_space("binary_classification", "normal", families=("gnn",)), 40, seed=3)
    keys = {sampling_key(p) for p in params}
    assert len(keys) <= len(SAMPLING_PRESETS)  # 40 trials, a handful of distinct batch streams
    shared = [p for p in params if sampling_key(p) == sampling_key(params[0])]
    assert len(shared) > 1 and len({(p["conv"], p["channels"], p["lr"]) for p in shared}) > 1
