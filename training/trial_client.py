"""``python -m training.trial_client --socket PATH``: run one trial in the warm trial server.

Standard library only, so it starts in milliseconds (the server imports these constants from here): it sends the server its environment (the Dagster Pipes
bootstrap variables among it) and its stdin/stdout/stderr, then waits for the trial's exit status and exits
with it, as if it had been the trial process itself. Killing this process kills the trial.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import struct
import sys

HEADER = struct.Struct("!I")  # length of the JSON request that follows it
EXIT_CODE = struct.Struct("!i")  # the trial's exit code as ``subprocess`` reports it (-N: killed by signal N)
FORKED_FROM_ENV = "KUMO_TRIAL_FORKED_FROM"  # set in a warm trial: the server's pid


def run(path: str) -> int:
    payload = json.dumps({"env": dict(os.environ), "cwd": os.getcwd()}).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        try:
            connection.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):  # the server is gone: become a cold trial
            os.execv(sys.executable, [sys.executable, "-m", "training.trial_entry"])
        socket.send_fds(connection, [HEADER.pack(len(payload)) + payload], [0, 1, 2])
        reply = b""
        while len(reply) < EXIT_CODE.size:
            chunk = connection.recv(EXIT_CODE.size - len(reply))
            if not chunk:
                print(f"trial server {path} closed the connection without an exit status", file=sys.stderr)
                return 1
            reply += chunk
    (code,) = EXIT_CODE.unpack(reply)
    if code < 0:  # killed by a signal: die the same way, so the caller sees what the trial saw
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True)
    sys.exit(run(parser.parse_args().socket))


if __name__ == "__main__":
    main()
