"""The local launcher's warm trial server: started once per key (a Dagster run), shared by its trial steps.

See ``training.trial_server``: it imports torch and PyG once and forks each trial from there. This module
only starts it (one per key, under a file lock, so parallel slot steps of a run share one) and says where its
socket is; anything that goes wrong yields None and the launcher starts trials cold, as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["CLIENT_MODULE", "SERVER_MODULE", "trial_server_socket"]

SERVER_MODULE = "training.trial_server"
CLIENT_MODULE = "training.trial_client"


def _accepts(path: Path) -> bool:
    with contextlib.closing(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def trial_server_socket(
    python: str, key: str, idle_seconds: float = 60.0, start_timeout: float = 300.0, log=None
) -> str | None:
    """The socket of the warm trial server for ``key``, starting it if needed; None if it cannot start."""
    folder = Path(tempfile.gettempdir()) / f"kumo-trials-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    name = hashlib.sha256(f"{python}|{key}".encode()).hexdigest()[:16]
    path, lock_path, log_path = (folder / f"{name}{suffix}" for suffix in (".sock", ".lock", ".log"))
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one starter per key; the others wait and reuse its server
        if _accepts(path):
            return str(path)
        with open(log_path, "ab") as server_log:
            server = subprocess.Popen(
                [python, "-m", SERVER_MODULE, "--socket", str(path), "--idle-seconds", str(idle_seconds)],
                stdin=subprocess.DEVNULL, stdout=server_log, stderr=server_log, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline and server.poll() is None:
            if _accepts(path):
                return str(path)
            time.sleep(0.1)
        if server.poll() is None:
            server.kill()
        if log is not None:
            log(f"warm trial server did not start (see {log_path}); trials start cold")
        return None
