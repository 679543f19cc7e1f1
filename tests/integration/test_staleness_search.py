"""A study can search fresh vs stale training per trial; all its trials then validate on one frozen view."""

from __future__ import annotations

import json

import optuna
import pytest

from kumo_assets.definitions import plain_resources
from relational.pql.queries import load_queries
from relational.spec_loader import load_spec
from tests.support.hpo_helpers import TINY, run_study, shop_fixture  # noqa: F401
from training.hpo import StudySettings
from training.search_space import search_space
from training.studies import StudyStorage
from training.study_setup import open_query_study


def test_staleness_is_drawn_per_family_only_when_searched():
    def drawn(space) -> set:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        values = set()
        for _ in range(40):
            params = space.suggest(study.ask())
            values.add((params["family"], params.get("simulate_staleness")))
        return values

    assert drawn(search_space("regression", "normal")) == {("gnn", None), ("gbdt", None)}
    searched = search_space("regression", "normal", overrides={"stalenesses": (False, True)})
    assert drawn(searched) == {(family, stale) for family in ("gnn", "gbdt") for stale in (False, True)}


@pytest.mark.integration
def test_a_staleness_search_validates_every_trial_on_the_frozen_view(shop):
    defs, instance, tmp_path = shop
    resources = plain_resources(defs)
    spec = load_spec(tmp_path / "shop" / "graph.yaml")
    query = load_queries(tmp_path / "shop" / "queries.yaml")["big_spender"]
    with pytest.raises(ValueError, match=r"search_staleness .* needs observe_until"):
        open_query_study(spec, query, StudySettings(search_staleness=True), TINY, resources["data_plane"],
                         resources["graph_store"], resources["feature_store"],
                         StudyStorage(url=str(tmp_path / "refused.log")))  # fmt: skip

    result = run_study(defs, instance, n_trials=4, families=["gnn"], search_staleness=True,
                       observe_until="2024-02-01", space={**TINY, "epochs": [1, 1]})  # fmt: skip
    assert result.success
    summaries = [json.loads(path.read_text())
                 for path in (tmp_path / "plane" / "shop" / "models" / "big_spender").glob("*/summary.json")]  # fmt: skip
    assert len(summaries) == 4
    assert all(summary["config"]["freeze_validation"] is True for summary in summaries)
    study_summary = json.loads(
        (tmp_path / "plane" / "shop" / "hpo" / "big_spender" / "summary.json").read_text()
    )
    storage = resources["study_storage"].get_storage(resources["data_plane"].root)
    study = optuna.load_study(study_name=study_summary["study_name"], storage=storage)
    drawn = {trial.number: trial.params["simulate_staleness_gnn"] for trial in study.trials}
    assert len(drawn) == 4  # a searched parameter of every trial, not a setting of the study
    trained = sorted(summary["config"]["simulate_staleness"] for summary in summaries)
    assert trained == sorted(drawn.values())
