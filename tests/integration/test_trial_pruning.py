"""A trial process prunes with its study's pruner, not Optuna's default (pruners are not stored in storage),
and never after its last epoch (the model is trained by then)."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution

from kumo_assets.definitions import plain_resources
from relational.pql.queries import load_queries
from relational.spec_loader import load_spec
from tests.support.hpo_helpers import TINY, shop_fixture  # noqa: F401
from training.hpo import StudySettings
from training.hpo_trial import TrialRequest, run_study_trial
from training.studies import StudyStorage
from training.study_setup import open_query_study

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("pruner", "epochs", "state"),
    [
        ("median", 3, "pruned"),
        ("none", 3, "complete"),
        ("median", 1, "complete"),
    ],  # never after the last epoch
)
def test_the_trial_uses_the_pruner_its_study_was_configured_with(shop, pruner, epochs, state):
    defs, _, tmp_path = shop
    resources = plain_resources(defs)
    spec = load_spec(tmp_path / "shop" / "graph.yaml")
    query = load_queries(tmp_path / "shop" / "queries.yaml")["big_spender"]
    settings = StudySettings(mode="fast", n_trials=8, families=("gnn",), pruner=pruner, device="cpu")
    storage = StudyStorage(url=str(tmp_path / f"{pruner}-{epochs}.log"))
    space = {**TINY, "epochs": [epochs, epochs]}
    study = open_query_study(spec, query, settings, space, resources["data_plane"], resources["graph_store"],
                             resources["feature_store"], storage)  # fmt: skip
    for _ in range(6):  # finished trials that were perfect from their first epoch: anything real is worse
        study.study.add_trial(optuna.trial.create_trial(
            params={"x": 0.5}, distributions={"x": FloatDistribution(0.0, 1.0)}, value=1.0,
            intermediate_values={epoch: 1.0 for epoch in range(3)},
        ))  # fmt: skip
    trial = study.study.ask()
    params = {**study.space.suggest(trial), **study.base_params}
    request = TrialRequest.for_study(study, trial_id=trial._trial_id, trial_number=trial.number, params=params,
                                     data_plane_root=resources["data_plane"].root,
                                     graph_store_root=resources["graph_store"].root, text_encoder="hashing")  # fmt: skip
    assert request.pruner == pruner
    result = run_study_trial(TrialRequest.from_extras(request.to_extras()), log=lambda _: None)
    assert result["state"] == state
    assert result["value"] is not None and result["value"] < 1.0
