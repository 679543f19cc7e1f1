"""Shared fixtures: the fake database, a local data plane, and where the shared reference data lives."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

from relational.spec_loader import load_spec
from stores.data_plane import DataPlane
from stores.object_store import ObjectStoreConnector
from tests.support.fake_db import write_fake_db
from tests.support.servers import free_port, port_open, running_server, venv_tool

# Property tests: a quick profile by default, a thorough one with HYPOTHESIS_PROFILE=thorough.
settings.register_profile("default", max_examples=100, deadline=None)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# pytest-xdist runs one worker per core: a second intra-op thread per worker only makes torch's OpenMP
# threads spin against each other (tiny models ran 15x slower with two threads on a busy machine).
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("KUMO_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
F1_SPEC = REPO_ROOT / "kumo_assets" / "examples" / "f1" / "graph.yaml"


@pytest.fixture(autouse=True)
def _no_inherited_dagster_state_storage() -> Iterator[None]:
    """Each test starts without a Dagster instance's definitions-state storage in context. CI once failed
    `Definitions.resolve_asset_graph()` in a test that opens no instance: a storage left current by another
    test's instance pointed at that dead instance ("Attempted to resolve undefined DagsterInstance weakref")."""
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(None):
        yield


@pytest.fixture
def fake_spec_path(tmp_path: Path) -> Path:
    return write_fake_db(tmp_path / "db")


@pytest.fixture
def fake_spec(fake_spec_path: Path):
    return load_spec(fake_spec_path)


@pytest.fixture
def data_plane(tmp_path: Path) -> DataPlane:
    return DataPlane(root=str(tmp_path / "plane"))


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 endpoint: moto_server on 127.0.0.1 for the whole session."""
    port = free_port()
    with running_server([venv_tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)], port_open(port)):
        yield f"http://127.0.0.1:{port}"


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


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL server on 127.0.0.1 for the whole session (initdb in a temp dir, fsync off)."""
    from tests.support.servers import running_postgres

    with running_postgres() as url:
        yield url
