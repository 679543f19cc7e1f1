"""Every command in the README, run as a newcomer would run it.

`make demo` runs for real (the Makefile target, the dagster CLI, a SQLite instance) with a CI-sized run
config (`tests/support/f1_demo_ci.yaml`; the full demo's time is measured in docs/benchmarks.md). The
commands it prints, `make dev`, `kumo leaderboard` and `kumo automation` run on what it made. The
bring-your-own-database section runs as written on ../shared/data/completejourney (in a temporary folder
instead of .kumo/), its `make dev` included, and its YAML excerpts are checked against the example's files.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import polars as pl
import pytest
from dagster import DagsterInstance
from optuna.trial import TrialState

from stores.data_plane import DataPlane
from tests.conftest import REPO_ROOT, SHARED_DATA
from tests.support.prediction_checks import check_f1_predictions
from tests.support.servers import free_port, graphql
from training.studies import StudyStorage

pytestmark = pytest.mark.integration

README = REPO_ROOT / "README.md"
F1_ROWS = {
    "circuits": 77, "constructors": 212, "drivers": 864, "races": 1149, "results": 27118,
    "driver_standings": 35235, "constructor_results": 12805, "constructor_standings": 13571, "qualifying": 10854,
}  # fmt: skip
INSTIGATORS = ("f1__driver_dnf__refresh_daily", "f1__driver_position__refresh_daily",
               "f1__driver_top3__refresh_daily", "capacity_ahead_of_demand", "new_data")  # fmt: skip
BYOD = "Bring your own database"
EXAMPLE = REPO_ROOT / "kumo_assets" / "examples" / "completejourney"


def readme_commands() -> list[str]:
    """Each command line of the README's bash blocks (comments stripped), in order."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.DOTALL)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def readme_section(title: str) -> str:
    """The README's ``## title`` section, up to the next ``## ``."""
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def section_commands(title: str) -> list[str]:
    """The command lines of a README section's bash blocks (comments stripped), in order."""
    blocks = re.findall(r"```bash\n(.*?)```", readme_section(title), flags=re.DOTALL)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def readme_inline_commands() -> list[str]:
    """Commands quoted inline in the README's prose (``.venv/bin/...``)."""
    return re.findall(r"`(\.venv/bin/[^`]+)`", README.read_text())


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """`make demo` on a fresh KUMO_HOME: returns its home, environment and output."""
    home = tmp_path_factory.mktemp("kumo_home")
    env = {**os.environ, "KUMO_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"),
           "KUMO_DATA_PLANE": str(home / "data")}  # fmt: skip
    completed = subprocess.run(
        ["make", "demo", "DEMO_RUN=tests/support/f1_demo_ci.yaml", "DEMO_DAY=2012-05-01"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return home, env, completed.stdout


def test_the_readme_runs_only_commands_these_tests_run():
    assert readme_commands()[:3] == ["make demo", "make test", "make dev"]
    # Every bash line is run below: the first three, the bring-your-own-database block, the validate block.
    assert readme_commands() == [
        *readme_commands()[:3],
        *section_commands(BYOD),
        *section_commands("Check a spec before you run it"),
    ]
    assert (REPO_ROOT / ".ci" / "run").read_text().rstrip().endswith("make test")  # CI runs `make test`
    assert all(command.startswith((".venv/bin/kumo ",)) for command in readme_inline_commands())


def test_make_demo_trains_scores_and_prints_the_leaderboard(demo):
    home, _, output = demo
    plane = home / "data"
    check_f1_study(plane)
    for query in ("driver_dnf", "driver_top3", "driver_position"):
        assert f"\n{query}:\n" in output
        assert f"predictions: {plane / 'f1' / 'predictions' / query / '2012-05-01.parquet'}" in output
    assert "baseline: own history" in output and "published: RelGNN" in output and "holdout (test)" in output
    check_f1_predictions(home, ["2012-05-01", "2024-06-01"])
    assert (home / "dagster" / "history" / "runs.db").is_file()
    data = DataPlane(root=str(plane))
    for table, rows in F1_ROWS.items():
        meta = data.get_json("f1", "tables", f"{table}.json")
        assert meta["rows"] == rows, table
        frame = data.get_frame("f1", "tables", f"{table}.parquet")
        assert frame.height == rows and frame["_kumo_id"].to_list() == list(range(rows))
        assert all(fk["dangling_rows"] == 0 for fk in meta["foreign_keys"]), table
    races = data.get_frame("f1", "tables", "races.parquet", columns=["raceId", "_kumo_time"])
    qualifying = data.get_frame("f1", "tables", "qualifying.parquet", columns=["raceId", "_kumo_time"])
    shifted = qualifying.join(races, on="raceId", suffix="_race")
    assert ((shifted["_kumo_time_race"] - shifted["_kumo_time"]) == 86400).all()
    # 2009 Australian GP (raceId 1): 2009-03-29 06:00:00 UTC.
    assert races.filter(pl.col("raceId") == 1)["_kumo_time"].item() == 1238306400


def test_the_automation_commands_the_demo_prints_turn_it_on(demo):
    home, env, output = demo
    table = output[output.index("Automation in the Dagster instance ") :].splitlines()
    assert table[0] == f"Automation in the Dagster instance {Path(env['DAGSTER_HOME']).resolve()}:"
    states = {line.split()[2]: line.split()[0] for line in table[2:7]}
    assert states == dict.fromkeys(INSTIGATORS, "off")  # a fresh instance: everything starts stopped
    assert "every minute" in next(line for line in table if "capacity_ahead_of_demand" in line)
    turn_on = table[
        table.index("Turn on what is off (the daemon that ticks them runs under `make dev`):") + 1 :
    ]
    turn_on = [line.strip() for line in itertools.takewhile(lambda line: line.startswith("  "), turn_on)]
    assert turn_on[0] == f"export DAGSTER_HOME={Path(env['DAGSTER_HOME']).resolve()}"
    assert [line.split()[1:3] + line.split()[-1:] for line in turn_on[1:]] == [
        ["schedule", "start", "--start-all"], ["sensor", "start", "--start-all"]
    ]  # fmt: skip
    completed = subprocess.run(["bash", "-c", "set -euo pipefail\n" + "\n".join(turn_on)], cwd=REPO_ROOT,
                               env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    with DagsterInstance.from_config(str(home / "dagster")) as instance:
        running = {state.instigator_name for state in instance.all_instigator_state() if state.is_running}
    assert set(INSTIGATORS) <= running
    (command,) = [line for line in readme_inline_commands() if line.startswith(".venv/bin/kumo automation")]
    completed = subprocess.run(command.split(), cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                               timeout=300)  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    lines = completed.stdout.splitlines()
    assert {line.split()[2]: line.split()[0] for line in lines[2:7]} == dict.fromkeys(INSTIGATORS, "on")
    assert lines[-1] == "All on; the daemon that ticks them runs under `make dev`."


def test_kumo_leaderboard_in_the_readme_prints_every_query(demo):
    _, env, _ = demo
    (command,) = [line for line in readme_inline_commands() if line.startswith(".venv/bin/kumo leaderboard")]
    completed = subprocess.run(
        command.split(), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr
    assert [line for line in completed.stdout.splitlines() if line.endswith(":") and not line.startswith(" ")] == [
        "driver_dnf:", "driver_top3:", "driver_position:"]  # fmt: skip


def test_make_dev_serves_the_ui_pictures_and_runs_the_daemon(demo):
    home, env, _ = demo
    port = free_port()
    dev = subprocess.Popen(["make", "dev", f"DEV_PORT={port}"], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        info = wait_for(f"http://127.0.0.1:{port}/server_info", dev, timeout=120)
        assert "dagster_webserver_version" in json.loads(info)
        picture = next((home / "data" / "f1" / "pictures").rglob("optimisation_history-*.png"))
        path = picture.relative_to(home / "data").as_posix()
        served = urllib.request.urlopen(f"http://127.0.0.1:{port}/kumo/pictures/{path}", timeout=30).read()
        assert served == picture.read_bytes()
        with DagsterInstance.from_config(str(home / "dagster")) as instance:
            deadline = time.monotonic() + 120
            while not instance.get_daemon_heartbeats() and time.monotonic() < deadline:
                time.sleep(1)
            assert instance.get_daemon_heartbeats()  # the daemon that ticks schedules and sensors runs
    finally:
        os.killpg(dev.pid, signal.SIGTERM)
        dev.wait(timeout=60)


def test_bring_your_own_database_yaml_is_the_examples_own():
    """Each YAML excerpt of the section is lines of graph.yaml or queries.yaml, in the files' order."""
    graph, queries = re.findall(r"```yaml\n(.*?)```", readme_section(BYOD), flags=re.DOTALL)
    for excerpt, path in ((graph, EXAMPLE / "graph.yaml"), (queries, EXAMPLE / "queries.yaml")):
        remaining = iter(path.read_text().splitlines())
        for line in excerpt.splitlines():
            assert any(line == candidate for candidate in remaining), (
                f"{path.name} has no (later) line {line!r}"
            )


def test_bring_your_own_database_block_runs(tmp_path):
    if not (SHARED_DATA / "completejourney").is_dir():
        pytest.fail(f"{SHARED_DATA / 'completejourney'} is missing: the README's bring-your-own-database "
                    "section reads it (put ../shared/data beside the repository or set KUMO_SHARED_DATA)")  # fmt: skip
    commands = section_commands(BYOD)
    assert commands[-1] == "make dev" and any(c.startswith(".venv/bin/kumo validate ") for c in commands)
    # The newcomer's .kumo/completejourney/ becomes a temporary folder; every command runs as written.
    exports = [line.replace("$PWD/.kumo/", f"{tmp_path}/") for line in commands if line.startswith("export ")]
    assert sum(line.count(f"{tmp_path}/") for line in exports) == 2  # the data plane and the Dagster instance
    exports.append(f"export KUMO_SHARED_DATA={SHARED_DATA}")  # where conftest found the data
    script = "set -euo pipefail\n" + "\n".join(
        exports + [c for c in commands[:-1] if not c.startswith("export ")]
    )
    env = {key: value for key, value in os.environ.items() if key not in ("DAGSTER_HOME", "KUMO_DATA_PLANE")}
    completed = subprocess.run(["bash", "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                               timeout=900)  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "OK: 12 table(s) and 2 query(ies)" in completed.stdout
    out = tmp_path / "completejourney" / "data" / "completejourney"
    pointer = json.loads((out / "best_model" / "churn" / "pointer.json").read_text())
    assert 0.0 <= pointer["metrics"]["test"]["auroc"] <= 1.0
    assert (out / "hpo" / "churn" / "summary.json").is_file()

    # `make dev` in the same shell: the UI shows the section's groups and churn's best model.
    port = free_port()
    dev = subprocess.Popen(["bash", "-c", "\n".join([*exports, f"exec make dev DEV_PORT={port}"])],
                           cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{port}/server_info", dev, timeout=120)
        deadline = time.monotonic() + 120
        answer = graphql(port, UI_QUERY)["data"]
        while not answer["assetNodes"] and time.monotonic() < deadline:  # the code location still loading
            time.sleep(1)
            answer = graphql(port, UI_QUERY)["data"]
    finally:
        os.killpg(dev.pid, signal.SIGTERM)
        dev.wait(timeout=60)
    groups = {node["groupName"] for node in answer["assetNodes"]}
    assert {"completejourney_tables", "completejourney_stores", "completejourney_churn"} <= groups
    assert answer["assetOrError"]["assetMaterializations"], "churn's best_model is not materialised in the UI"


UI_QUERY = """
{
  assetNodes { groupName }
  assetOrError(assetKey: {path: ["completejourney", "churn", "best_model"]}) {
    ... on Asset { assetMaterializations(limit: 1) { runId } }
  }
}
"""


def test_kumo_validate_block_passes_on_f1_and_writes_nothing(tmp_path):
    (command,) = section_commands("Check a spec before you run it")
    before = {
        path: path.stat().st_mtime for path in (REPO_ROOT / "kumo_assets" / "examples" / "f1").iterdir()
    }
    env = {**os.environ, "KUMO_HOME": str(tmp_path), "KUMO_DATA_PLANE": str(tmp_path / "data")}
    completed = subprocess.run(
        command.split(), cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-2000:]
    lines = completed.stdout.splitlines()
    assert sum(line.startswith("  table ") and line.endswith(" OK") for line in lines) == len(F1_ROWS)
    assert [line.split()[1] for line in lines if line.startswith("  query ")] == [
        "driver_dnf", "driver_top3", "driver_position"]  # fmt: skip
    assert lines[-1].startswith("OK: 9 table(s) and 3 query(ies)")
    after = {path: path.stat().st_mtime for path in (REPO_ROOT / "kumo_assets" / "examples" / "f1").iterdir()}
    assert after == before and not any(tmp_path.iterdir())


def wait_for(url: str, process: subprocess.Popen, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server behind {url} exited with {process.returncode}")
        try:
            return urllib.request.urlopen(url, timeout=5).read()
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def check_f1_study(plane_root: Path) -> None:
    """The CI demo's driver-dnf study: 4 trials through the local launcher, running side by side."""
    storage = StudyStorage().get_storage(str(plane_root))
    names = [name for name in optuna.study.get_all_study_names(storage) if name.startswith("f1.driver_dnf.")]
    study = optuna.load_study(study_name=names[0], storage=storage)
    trials = study.get_trials()
    assert len(names) == 1 and len(trials) >= 4
    assert all(t.state == TrialState.COMPLETE for t in trials), [(t.number, t.state, t.user_attrs.get("failure"))
                                                                   for t in trials]  # fmt: skip
    assert 0.5 < study.best_value <= 1.0  # validation AUROC of a real model
    events = sorted(
        [(t.user_attrs["started_at"], 1) for t in trials]
        + [(t.user_attrs["finished_at"], -1) for t in trials]
    )
    assert max(itertools.accumulate(step for _, step in events)) >= 3  # the slots really ran side by side
    assert len({t.user_attrs["placement"]["cpu"] for t in trials}) == 1
    summary = json.loads((plane_root / "f1" / "hpo" / "driver_dnf" / "summary.json").read_text())
    assert summary["best"]["number"] == study.best_trial.number
    pointer = json.loads((plane_root / "f1" / "best_model" / "driver_dnf" / "pointer.json").read_text())
    assert pointer["trial"] == study.best_trial.number and 0.0 <= pointer["metrics"]["test"]["auroc"] <= 1.0
