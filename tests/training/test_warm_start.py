"""The warm trial server: one per key, shared, gone when idle; clients run through it or fall back cold.

Trials through the server end to end (Dagster Pipes, a SIGKILLed trial's retry) are in test_hpo_study.py and
test_hpo_faults.py, which assert that their trials were forked from it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest

from training.warm_start import CLIENT_MODULE, trial_server_socket

pytestmark = pytest.mark.integration


def client(socket_path: str) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("DAGSTER_PIPES")}
    return subprocess.run([sys.executable, "-m", CLIENT_MODULE, "--socket", socket_path], env=clean,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_one_server_per_key_serves_trials_and_exits_when_idle():
    key = f"test-{uuid.uuid4().hex}"
    path = trial_server_socket(sys.executable, key, idle_seconds=3)
    assert path is not None and os.path.exists(path)
    assert trial_server_socket(sys.executable, key, idle_seconds=3) == path  # reused, not started again
    servers = subprocess.run(["pgrep", "-f", path], capture_output=True, text=True).stdout.split()
    assert len(servers) == 1

    # Without a Pipes context the trial entrypoint fails the same way in a forked child as in a fresh
    # process: the client relays its stderr and its exit status.
    done = client(path)
    assert done.returncode == 1 and "TrialRequest.__init__() missing" in done.stderr
    assert "training/trial_server.py" in done.stderr  # the traceback passes through the forking server

    deadline = time.monotonic() + 30
    while os.path.exists(path) or subprocess.run(["pgrep", "-f", path], capture_output=True).stdout:
        assert time.monotonic() < deadline, "the idle server did not exit"
        time.sleep(0.2)


def test_a_client_without_a_server_becomes_a_cold_trial(tmp_path):
    done = client(str(tmp_path / "no-server.sock"))
    assert done.returncode == 1 and "TrialRequest.__init__() missing" in done.stderr
    assert "training/trial_entry.py" in done.stderr and "trial_server" not in done.stderr  # exec'd itself
