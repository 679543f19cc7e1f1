"""Real servers for tests (moto, the Dagster webserver): started in their own session, stopped by PID."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def venv_tool(name: str) -> str:
    """A console script installed beside the running interpreter."""
    return str(Path(sys.executable).parent / name)


@contextlib.contextmanager
def running_server(
    command: list[str],
    ready: Callable[[], bool],
    timeout: float = 60,
    stop_signal: int = signal.SIGTERM,
    **popen,
) -> Iterator[subprocess.Popen]:
    """Start ``command``, wait until ``ready()`` is true, and always stop it (signal, then kill)."""
    server = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, **popen
    )
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not become ready within {timeout}s")
            time.sleep(0.1)
        yield server
    finally:
        server.send_signal(stop_signal)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def port_open(port: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    return check
