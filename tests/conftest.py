"""Shared fixtures: the fake database, a local data plane, and where the shared reference data lives."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kumo_assets.spec_loader import load_spec
from resources.connectors import ObjectStoreConnector
from resources.data_plane import DataPlane
from tests.fake_db import write_fake_db

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("KUMO_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
F1_SPEC = REPO_ROOT / "kumo_assets" / "examples" / "f1" / "graph.yaml"


@pytest.fixture
def fake_spec_path(tmp_path: Path) -> Path:
    return write_fake_db(tmp_path / "db")


@pytest.fixture
def fake_spec(fake_spec_path: Path):
    return load_spec(fake_spec_path)


@pytest.fixture
def data_plane(tmp_path: Path) -> DataPlane:
    return DataPlane(root=str(tmp_path / "plane"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 endpoint: moto_server on 127.0.0.1, started for the session and stopped by PID."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.05)
    try:
        yield url
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket on the moto endpoint, with fake credentials in the environment (never real ones)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    name = f"bucket-{uuid.uuid4().hex[:12]}"
    ObjectStoreConnector(endpoint_url=s3_endpoint, region="us-east-1").client().create_bucket(Bucket=name)
    return name
