"""Optuna study storage by URL: parsing, concurrent writer processes, resuming, stale trials, dashboard."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from stores.data_plane import DataPlane
from training.studies import (
    OWNER_ATTR,
    StudyStorage,
    StudyStorageError,
    dashboard_hint,
    make_storage,
    open_study,
    resolve_url,
    trial_owner_alive,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
optuna.logging.set_verbosity(optuna.logging.WARNING)

# Spawned once per test: imports the code under test (dagster, alembic: ~3 s of CPU), then forks one
# writer per worker. Forking here is safe (one thread, no connection open yet), unlike forking a pytest-xdist worker.
# Each writer opens the study by URL, waits at a file barrier so that all write at once, then runs ask/tell
# trials tagged (worker, i).
WRITERS = """
import os, sys, threading, time, traceback
from pathlib import Path
import optuna
from training.studies import open_study
optuna.logging.set_verbosity(optuna.logging.WARNING)
url, name, workers, n_trials, barrier = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])

def write(worker):
    study = open_study(url, name, "minimize")
    (barrier / f"ready-{worker}").touch()
    deadline = time.monotonic() + 120
    while not (barrier / "go").exists():
        assert time.monotonic() < deadline, "no go signal"
        time.sleep(0.01)
    for i in range(n_trials):
        trial = study.ask()
        x = trial.suggest_float("x", -10, 10)
        trial.set_user_attr("tag", f"{worker}:{i}")
        trial.set_user_attr("pid", os.getpid())
        study.tell(trial, (x - 2) ** 2)

if url.startswith("postgresql"):  # Optuna's RDB storage imports these lazily: import them once, pre-fork
    import alembic.command, alembic.config, alembic.migration, alembic.script, psycopg2
    import optuna.storages._rdb.models, optuna.storages._rdb.storage, sqlalchemy.dialects.postgresql.psycopg2
assert threading.active_count() == 1
children = []
for worker in range(workers):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            write(worker)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    children.append(pid)
sys.exit(max(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0 for pid in children))
"""

# Asks one trial, claims it for this process, says its number, then hangs until killed.
HANGING_ASKER = """
import sys, time
import optuna
from training.studies import claim_trial, open_study
optuna.logging.set_verbosity(optuna.logging.WARNING)
study = open_study(sys.argv[1], sys.argv[2], "minimize")
trial = study.ask()
trial.suggest_float("x", 0, 1)
claim_trial(study, trial)
print(trial.number, flush=True)
time.sleep(600)
"""

# Runs Study.optimize with 1 s heartbeats on an objective that hangs; says the trial number once at least
# one heartbeat is surely recorded (Optuna never counts a trial without heartbeats as stale).
HANGING_OPTIMIZER = """
import sys, time
import optuna
from training.studies import StudyStorage, open_study
optuna.logging.set_verbosity(optuna.logging.WARNING)
storage = StudyStorage(url=sys.argv[1], heartbeat_interval=1, grace_period=3).get_storage()
study = open_study(storage, sys.argv[2], "minimize")

def objective(trial):
    trial.suggest_float("x", 0, 1)
    time.sleep(1.5)
    print(trial.number, flush=True)
    time.sleep(600)

study.optimize(objective, n_trials=1)
"""


def _python(code: str, *args: str, **popen) -> subprocess.Popen:
    """A fresh interpreter (spawned, never forked from a pytest-xdist worker) running ``code``."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], cwd=REPO_ROOT, env=env, start_new_session=True, **popen
    )


@contextlib.contextmanager
def _killed_at_exit(processes: list[subprocess.Popen]) -> Iterator[list[subprocess.Popen]]:
    try:
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()


def _run_writers(url: str, name: str, workers: int, n_trials: int, barrier: Path) -> None:
    """``workers`` concurrent writer processes on one study; returns once all have finished cleanly."""
    barrier.mkdir()
    writers = _python(WRITERS, url, name, str(workers), str(n_trials), str(barrier), stderr=subprocess.PIPE)
    with _killed_at_exit([writers]):
        deadline = time.monotonic() + 90
        while len(list(barrier.glob("ready-*"))) < workers:
            assert writers.poll() is None, writers.stderr.read().decode()
            assert time.monotonic() < deadline, "writers did not start"
            time.sleep(0.05)
        (barrier / "go").touch()
        _, err = writers.communicate(timeout=90)
        assert writers.returncode == 0, err.decode()


def _check_all_recorded_once(study: optuna.Study, workers: int, n_trials: int) -> None:
    trials = study.get_trials()
    assert len(trials) == workers * n_trials
    assert sorted(t.number for t in trials) == list(range(workers * n_trials))
    assert len({t._trial_id for t in trials}) == workers * n_trials
    assert sorted(t.user_attrs["tag"] for t in trials) == sorted(
        f"{w}:{i}" for w in range(workers) for i in range(n_trials)
    )
    assert {t.state for t in trials} == {TrialState.COMPLETE}
    assert all(t.value == pytest.approx((t.params["x"] - 2) ** 2) for t in trials)
    assert len({t.user_attrs["pid"] for t in trials}) == workers


def _first_line(process: subprocess.Popen, timeout: float = 60) -> str:
    """The first stdout line of ``process`` (it must print one before ``timeout``)."""
    deadline = time.monotonic() + timeout
    line = ""
    while not line.endswith("\n"):
        assert process.poll() is None, f"exited with {process.returncode} before printing"
        assert time.monotonic() < deadline, "no output in time"
        line += process.stdout.readline()
    return line.strip()


# --- URL forms ---------------------------------------------------------------------------------------


def test_empty_url_is_a_journal_under_the_local_data_plane(tmp_path: Path) -> None:
    plane = DataPlane(root=str(tmp_path / "plane"))
    resource = StudyStorage()
    expected = tmp_path / "plane" / "optuna" / "journal.log"
    assert resource.resolved_url(plane) == f"journal://{expected}"
    assert resource.resolved_url(str(tmp_path / "plane")) == f"journal://{expected}"
    storage = resource.get_storage(plane)
    assert isinstance(storage, JournalStorage)
    open_study(storage, "s", "maximize").optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert expected.stat().st_size > 0  # the study really went to that file
    assert resource.dashboard_hint(plane) == f"optuna-dashboard {expected}"


@pytest.mark.parametrize("form", ["journal", "absolute", "relative"])
def test_journal_urls(tmp_path: Path, form: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = {
        "journal": f"journal://{tmp_path}/a/j.log",
        "absolute": f"{tmp_path}/b/j.log",
        "relative": "c/j.log",
    }
    resolved = resolve_url(url[form])
    path = Path(resolved.removeprefix("journal://"))
    assert path.is_absolute() and path.parent.parent == tmp_path and path.name == "j.log"
    assert isinstance(make_storage(url[form]), JournalStorage)
    assert path.exists()


def test_sqlite_is_rdb_without_heartbeats(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/o.db"
    storage = StudyStorage(url=url).get_storage()
    assert isinstance(storage, RDBStorage)
    assert storage.get_heartbeat_interval() is None
    assert dashboard_hint(url) == f"optuna-dashboard {url}"


@pytest.mark.integration
@pytest.mark.parametrize("scheme", ["postgresql+psycopg2://", "postgresql://", "postgres://"])
def test_postgres_is_rdb_with_heartbeats_and_retry(postgres_url: str, scheme: str) -> None:
    url = scheme + postgres_url.split("://", 1)[1]
    storage = StudyStorage(url=url, heartbeat_interval=7, grace_period=21, max_retry=2).get_storage()
    assert isinstance(storage, RDBStorage)
    assert storage.url.startswith("postgresql+psycopg2://")
    assert storage.get_heartbeat_interval() == 7
    assert storage.grace_period == 21
    callback = storage.get_heartbeat_stale_trial_callback()
    assert isinstance(callback, RetryHeartbeatStaleTrialCallback)
    assert callback._max_retry == 2
    open_study(storage, f"pg-{uuid.uuid4().hex}")  # the normalised URL really connects


def test_dashboard_hint_masks_the_postgres_password() -> None:
    hint = dashboard_hint("postgresql://kumo:s3cret@db.internal:5432/optuna")
    assert "s3cret" not in hint
    command = shlex.split(hint, comments=True)  # a valid shell command, the *** quoted
    assert command == ["optuna-dashboard", "postgresql+psycopg2://kumo:***@db.internal:5432/optuna"]


@pytest.mark.parametrize(
    "url",
    ["mysql://u@h/db", "redis://localhost:6379", "s3://bucket/journal.log", "optuna.db", "journal://rel.log"],
)
def test_unknown_forms_are_refused_with_the_accepted_ones(url: str) -> None:
    with pytest.raises(StudyStorageError) as error:
        make_storage(url)
    assert url in str(error.value)
    assert "postgresql://" in str(error.value) and "journal:///" in str(error.value)


def test_remote_data_plane_needs_a_postgres_url() -> None:
    plane = DataPlane(root="s3://bucket/prefix")
    with pytest.raises(StudyStorageError, match=r"remote \(s3://bucket/prefix\).*Postgres URL"):
        StudyStorage().get_storage(plane)
    with pytest.raises(StudyStorageError, match="no data plane"):
        StudyStorage().get_storage()


def test_opening_with_other_directions_is_refused(tmp_path: Path) -> None:
    url = str(tmp_path / "j.log")
    open_study(url, "s", "minimize")
    with pytest.raises(StudyStorageError, match=r"directions \['minimize'\]"):
        open_study(url, "s", "maximize")
    assert open_study(url, "multi", ["minimize", "maximize"]).directions == [
        optuna.study.StudyDirection.MINIMIZE,
        optuna.study.StudyDirection.MAXIMIZE,
    ]


# --- Concurrent writers and resuming -----------------------------------------------------------------


def test_journal_four_concurrent_writer_processes(tmp_path: Path) -> None:
    url = f"journal://{tmp_path}/optuna/journal.log"
    open_study(url, "shared", "minimize")  # the driver creates the study; trial processes load it
    _run_writers(url, "shared", workers=4, n_trials=8, barrier=tmp_path / "barrier")
    _check_all_recorded_once(open_study(url, "shared"), workers=4, n_trials=8)


@pytest.mark.integration
def test_postgres_eight_concurrent_writer_processes(postgres_url: str, tmp_path: Path) -> None:
    name = f"shared-{uuid.uuid4().hex}"
    open_study(postgres_url, name, "minimize")
    _run_writers(postgres_url, name, workers=8, n_trials=4, barrier=tmp_path / "barrier")
    _check_all_recorded_once(open_study(postgres_url, name), workers=8, n_trials=4)


@pytest.mark.parametrize("backend", ["journal", pytest.param("postgres", marks=pytest.mark.integration)])
def test_reopening_continues_the_study(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = str(tmp_path / "j.log") if backend == "journal" else request.getfixturevalue("postgres_url")
    name = f"resume-{uuid.uuid4().hex}"
    first = open_study(url, name, "minimize")
    first.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.5) ** 2, n_trials=3)
    again = open_study(make_storage(url), name, "minimize")  # a new storage object, as after a restart
    assert again._study_id == first._study_id
    assert [t.number for t in again.get_trials()] == [0, 1, 2]
    again.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.5) ** 2, n_trials=2)
    assert [t.number for t in open_study(url, name).get_trials()] == [0, 1, 2, 3, 4]


# --- Stale trials -----------------------------------------------------------------------------------


def test_a_trial_owner_is_alive_until_its_process_is_killed(tmp_path: Path) -> None:
    url = f"journal://{tmp_path}/j.log"
    study = open_study(url, "stale", "minimize")
    victim = _python(HANGING_ASKER, url, "stale", stdout=subprocess.PIPE, text=True)
    survivor = _python(HANGING_ASKER, url, "stale", stdout=subprocess.PIPE, text=True)
    with _killed_at_exit([victim, survivor]):
        victim_number, survivor_number = int(_first_line(victim)), int(_first_line(survivor))
        unclaimed = study.ask()  # asked by nobody we can check
        by_number = {t.number: t for t in study.get_trials()}
        assert trial_owner_alive(by_number[victim_number]) is True
        assert trial_owner_alive(by_number[unclaimed.number]) is None
        assert by_number[victim_number].system_attrs[OWNER_ATTR]["pid"] == victim.pid
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        by_number = {t.number: t for t in study.get_trials()}
        assert trial_owner_alive(by_number[victim_number]) is False
        assert trial_owner_alive(by_number[survivor_number]) is True


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_postgres_heartbeat_fails_and_retries_a_killed_optimize(postgres_url: str) -> None:
    name = f"heartbeat-{uuid.uuid4().hex}"
    storage = StudyStorage(url=postgres_url, heartbeat_interval=1, grace_period=3).get_storage()
    study = open_study(storage, name, "minimize")
    worker = _python(HANGING_OPTIMIZER, postgres_url, name, stdout=subprocess.PIPE, text=True)
    with _killed_at_exit([worker]):
        number = int(_first_line(worker))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        killed_at = time.monotonic()
        optuna.storages.fail_stale_trials(study)  # within the grace period: still RUNNING
        assert study.get_trials()[number].state == TrialState.RUNNING
        while study.get_trials()[number].state == TrialState.RUNNING:
            assert time.monotonic() - killed_at < 20, "the stale trial was never failed"
            time.sleep(0.25)
            optuna.storages.fail_stale_trials(study)
    assert time.monotonic() - killed_at > 1.0  # not before the 3 s grace (less up to 1 s heartbeat interval)
    trials = study.get_trials()
    assert trials[number].state == TrialState.FAIL
    (retry,) = [t for t in trials if t.state == TrialState.WAITING]
    assert retry.system_attrs["failed_trial"] == number
    assert retry.params == trials[number].params


# --- optuna-dashboard -------------------------------------------------------------------------------


def _get_json(app, path: str) -> dict:
    environ: dict = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s) or io.BytesIO().write))
    assert status[0].startswith("200"), (status, body[:500])
    return json.loads(body)


def test_optuna_dashboard_reads_the_journal(tmp_path: Path) -> None:
    import optuna_dashboard

    plane = DataPlane(root=str(tmp_path / "plane"))
    resource = StudyStorage()
    study = resource.open_study("finished", "minimize", plane)
    study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.25) ** 2, n_trials=3)

    # Exactly the argument the hint tells a person to give optuna-dashboard.
    app = optuna_dashboard.wsgi(shlex.split(resource.dashboard_hint(plane))[1])
    (summary,) = _get_json(app, "/api/studies")["study_summaries"]
    assert summary["study_name"] == "finished"
    detail = _get_json(app, f"/api/studies/{summary['study_id']}")
    assert len(detail["trials"]) == 3
    assert {t["state"] for t in detail["trials"]} == {"Complete"}
    assert detail["best_trials"][0]["values"] == [pytest.approx(study.best_value)]


def test_the_storage_url_is_an_environment_reference_in_the_definitions(tmp_path, monkeypatch):
    """A Postgres URL with its password stays out of the definitions' config (the UI and run config show
    the variable's name) and resolves when a run builds the resource."""
    from dagster import EnvVar, build_resources

    from kumo_assets.definitions import build_definitions
    from tests.support.fake_db import write_fake_db

    url = "postgresql://kumo:s3cret@db.internal:5432/optuna"
    monkeypatch.setenv("KUMO_OPTUNA_STORAGE", url)
    resource = build_definitions([write_fake_db(tmp_path / "shop")], str(tmp_path / "plane")).resources[
        "study_storage"
    ]
    assert isinstance(resource.url, EnvVar) and "s3cret" not in repr(resource)
    with build_resources({"study_storage": resource}) as built:
        assert built.study_storage.url == url
