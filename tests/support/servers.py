"""Real servers for tests (moto, Postgres, the Dagster webserver): own session each, stopped by PID."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def graphql(port: int, query: str, timeout: float = 60) -> dict:
    """The answer of the Dagster webserver on 127.0.0.1:``port`` to a GraphQL ``query``."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


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


def postgres_bin_dir() -> Path:
    """Folder of ``initdb`` and ``postgres``: PATH, else Debian's /usr/lib/postgresql/*/bin, else dpkg -L."""
    on_path = shutil.which("initdb")
    if on_path and (Path(on_path).resolve().parent / "postgres").exists():
        return Path(on_path).resolve().parent
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[4]))
    if debian:
        return Path(debian[-1]).parent
    if shutil.which("dpkg-query") and shutil.which("dpkg"):
        packages = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Package}\n", "postgresql*"], capture_output=True, text=True
        ).stdout.split()
        for package in packages:
            files = subprocess.run(
                ["dpkg", "-L", package], capture_output=True, text=True
            ).stdout.splitlines()
            for file in files:
                if file.endswith("/bin/initdb") and (Path(file).parent / "postgres").exists():
                    return Path(file).parent
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, postgres) were not found on PATH, in /usr/lib/postgresql/*/bin "
        "or in dpkg's file lists: install them with `apt-get install postgresql` (.ci/run does so when "
        "apt-get is available)"
    )


def postgres_ready(port: int) -> Callable[[], bool]:
    """True once the server accepts a real login (an open port alone may still answer 'starting up')."""

    def check() -> bool:
        import psycopg2

        try:
            psycopg2.connect(
                host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=1
            ).close()
            return True
        except psycopg2.OperationalError:
            return False

    return check


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 (trust auth, fsync off); yields its psycopg2 URL.

    initdb refuses root, so as root both run as the ``postgres`` user in a temp dir it owns: initdb through
    ``runuser``, the server through ``Popen(user=...)`` because runuser forks, and the server must be the
    process whose PID we stop (SIGINT: fast shutdown, even with clients connected).
    """
    bin_dir = postgres_bin_dir()
    as_root = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="kumo-postgres-"))
    try:
        run_as: list[str] = []
        popen_user: dict = {}
        if as_root:
            shutil.chown(base, user="postgres", group="postgres")
            run_as = ["runuser", "-u", "postgres", "--"]
            popen_user = {"user": "postgres", "group": "postgres", "extra_groups": []}
        data = base / "data"
        initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
        init = subprocess.run([*run_as, *initdb, "--locale=C", "--no-sync"], capture_output=True, text=True)
        if init.returncode != 0:
            raise RuntimeError(
                f"initdb failed ({init.returncode}): {init.stderr.strip() or init.stdout.strip()}"
            )
        port = free_port()
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(base),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        command = [str(bin_dir / "postgres"), "-D", str(data), "-p", str(port)]
        for key, value in settings.items():
            command += ["-c", f"{key}={value}"]
        with running_server(command, postgres_ready(port), stop_signal=signal.SIGINT, **popen_user):
            yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        shutil.rmtree(base, ignore_errors=True)
