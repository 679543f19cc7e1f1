"""Warm trial starts: a server that has imported the trial code once forks one child per trial.

A trial process spends 8-20 s importing torch, PyG and our packages before it trains (more when several
start at once on few cores); tiny HPO trials were mostly imports. The local launcher starts this server once
per Dagster run and runs each trial as ``python -m training.trial_client``, a stdlib-only client that
hands the server its environment and its stdin/stdout/stderr; the server forks a child that runs the trial
entrypoint exactly as a fresh process would (same Pipes environment, same stdio) and reports its exit status.

The server stays single-threaded so forking is safe: it only imports (no torch op, no polars query, no
thread pool is started before a fork). A client that disappears (its step was killed) gets its trial
killed too. The server exits after ``--idle-seconds`` without trials.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import socket
import struct
import sys
import time
import traceback

from training.trial_client import EXIT_CODE, FORKED_FROM_ENV, HEADER


def _preload() -> None:
    """Import the expensive libraries every trial needs (about 85% of a trial's import time); run nothing.

    Not polars: its import starts native threads (a spill-file cleaner) that a forked child would lack, and
    preloading it deadlocked forked Dagster steps before. Each child imports polars and our code itself.
    """
    import dagster_pipes  # noqa: F401
    import numba  # noqa: F401
    import optuna  # noqa: F401
    import torch  # noqa: F401
    import torch_geometric.data
    import torch_geometric.nn  # noqa: F401

    if "polars" in sys.modules:
        raise RuntimeError("the trial server must not import polars before forking (see _preload)")


def _run_child(connection: socket.socket, listener: socket.socket, request: dict, fds: list[int]) -> None:
    """In the forked child: become the trial process the client would have started, then exit."""
    code = 1
    try:
        listener.close()
        connection.close()
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
            os.close(fd)
        os.setpgid(0, 0)  # its own group: the server can kill the trial and anything it started
        _die_with_parent()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ[FORKED_FROM_ENV] = str(os.getppid())  # the trial says it started warm (see its result)
        os.chdir(request.get("cwd") or os.getcwd())
        sys.argv = ["training.trial_entry"]
        from training import trial_entry

        trial_entry.main()
        code = 0
    except SystemExit as exit_request:
        code = exit_request.code if isinstance(exit_request.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _die_with_parent() -> None:
    """Linux: SIGKILL this child if the server dies, so no trial outlives a killed server."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _receive(connection: socket.socket) -> tuple[dict, list[int]]:
    message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
    (size,) = HEADER.unpack_from(message)
    payload = message[HEADER.size :]
    while len(payload) < size:
        chunk = connection.recv(size - len(payload))
        if not chunk:
            raise ConnectionError("client went away mid-request")
        payload += chunk
    return json.loads(payload), list(fds)


def serve(path: str, idle_seconds: float) -> None:
    _preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    staging = f"{path}.{os.getpid()}"
    listener.bind(staging)
    listener.listen(64)
    os.replace(staging, path)  # clients see the socket only once it accepts
    children: dict[int, socket.socket] = {}  # child pid -> its client's connection
    last_active = time.monotonic()
    try:
        while children or time.monotonic() - last_active < idle_seconds:
            watched = [listener, *children.values()]
            readable, _, _ = select.select(watched, [], [], 0.2)
            for ready in readable:
                if ready is listener:
                    connection, _ = listener.accept()
                    try:
                        request, fds = _receive(connection)
                    except (OSError, ValueError, struct.error):  # a liveness probe, or a client that died
                        connection.close()
                        continue
                    pid = os.fork()
                    if pid == 0:
                        _run_child(connection, listener, request, fds)
                    for fd in fds:
                        os.close(fd)
                    children[pid] = connection
                else:  # a client connection readable: it closed, so its trial must not outlive it
                    pid = next(p for p, c in children.items() if c is ready)
                    if not ready.recv(1):
                        _kill_group(pid)
            for pid, connection in list(children.items()):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    code = os.waitstatus_to_exitcode(status)
                    with contextlib.suppress(OSError):
                        connection.sendall(EXIT_CODE.pack(code))
                    connection.close()
                    del children[pid]
                    last_active = time.monotonic()
    finally:
        if os.path.exists(path):
            os.unlink(path)  # first: new clients fall back to a cold start instead of queueing here
        for pid in children:
            _kill_group(pid)
        listener.close()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="Unix socket path to serve on")
    parser.add_argument("--idle-seconds", type=float, default=120.0)
    args = parser.parse_args()
    serve(args.socket, args.idle_seconds)


if __name__ == "__main__":
    main()
