"""A trial process never imports Dagster: the trial entry point, the warm server's preload and a whole trial
run in a fresh interpreter, which then lists what it imported (every trial would pay ~4 s for ``dagster``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kumo_assets.definitions import plain_resources
from relational.pql.queries import load_queries
from relational.spec_loader import load_spec
from tests.conftest import REPO_ROOT
from tests.support.hpo_helpers import TINY, shop_fixture  # noqa: F401
from training.hpo import StudySettings
from training.hpo_trial import TrialRequest
from training.studies import StudyStorage
from training.study_setup import open_query_study

pytestmark = pytest.mark.integration

TRIAL_PROCESS = """
import json, sys
from training.trial_server import _preload
_preload()  # what a warm trial inherits from the server
from training import trial_entry  # noqa: F401 (the cold entry point)
from training.hpo_trial import TrialRequest, run_study_trial
with open(sys.argv[1]) as extras:
    result = run_study_trial(TrialRequest.from_extras(json.load(extras)), log=lambda _: None)
shell = sorted(name for name in sys.modules if name.split(".")[0] in {"dagster", "dagster_k8s", "dagster_aws"})
print(json.dumps({"state": result["state"], "dagster_modules": shell}))
"""


def test_a_trial_process_never_imports_dagster(shop):
    defs, _, tmp_path = shop
    resources = plain_resources(defs)
    spec = load_spec(tmp_path / "shop" / "graph.yaml")
    query = load_queries(tmp_path / "shop" / "queries.yaml")["big_spender"]
    settings = StudySettings(mode="fast", n_trials=1, families=("gnn",), pruner="none", device="cpu")
    study = open_query_study(spec, query, settings, TINY, resources["data_plane"], resources["graph_store"],
                             resources["feature_store"], StudyStorage(url=str(tmp_path / "journal.log")))  # fmt: skip
    trial = study.study.ask()
    request = TrialRequest.for_study(study, trial_id=trial._trial_id, trial_number=trial.number,
                                     params={**study.space.suggest(trial), **study.base_params},
                                     data_plane_root=resources["data_plane"].root,
                                     graph_store_root=resources["graph_store"].root, text_encoder="hashing")  # fmt: skip
    extras = tmp_path / "extras.json"
    extras.write_text(json.dumps(request.to_extras()))
    completed = subprocess.run([sys.executable, "-c", TRIAL_PROCESS, str(extras)], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=600)  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report == {"state": "complete", "dagster_modules": []}
