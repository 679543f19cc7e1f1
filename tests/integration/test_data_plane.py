"""One contract suite for every data-plane backend (local folder, S3 on a real endpoint)."""

from __future__ import annotations

import hashlib
import os

import polars as pl
import pytest

from stores.data_plane import DataPlane, atomic_path
from stores.object_store import ObjectStoreConnector


@pytest.fixture(params=["local", "s3"])
def plane(request, tmp_path) -> DataPlane:
    if request.param == "local":
        return DataPlane(root=str(tmp_path / "plane"))
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    return DataPlane(root=f"s3://{bucket}/plane", object_store=ObjectStoreConnector(endpoint_url=endpoint))


def test_bytes_and_json_round_trip(plane):
    plane.put_bytes(b"hello", "g", "a.bin")
    assert plane.get_bytes("g", "a.bin") == b"hello"
    plane.put_json({"rows": 3, "nested": {"x": [1, 2]}}, "g", "meta.json")
    assert plane.get_json("g", "meta.json") == {"rows": 3, "nested": {"x": [1, 2]}}


def test_frame_round_trip_with_hash_and_column_selection(plane):
    frame = pl.DataFrame({"a": [1, 2, None], "b": ["x", None, "z"], "c": [0.5, 1.5, 2.5]})
    uri, digest, size = plane.put_frame(frame, "g", "tables", "t.parquet")
    assert uri == plane.uri("g", "tables", "t.parquet")
    assert plane.get_frame("g", "tables", "t.parquet").equals(frame)
    assert plane.get_frame("g", "tables", "t.parquet", columns=["b"]).columns == ["b"]
    data = plane.get_bytes("g", "tables", "t.parquet")
    assert len(data) == size and hashlib.sha256(data).hexdigest() == digest


def test_overwrite_replaces_whole_artifact(plane):
    plane.put_bytes(b"first version", "g", "a.bin")
    plane.put_bytes(b"v2", "g", "a.bin")
    assert plane.get_bytes("g", "a.bin") == b"v2"


def test_missing_artifact_is_file_not_found(plane):
    with pytest.raises(FileNotFoundError, match="materialise the asset"):
        plane.get_bytes("g", "nothing.bin")
    with pytest.raises(FileNotFoundError):
        plane.get_frame("g", "nothing.parquet")


def test_failed_local_write_leaves_previous_version_and_no_temp_files(tmp_path):
    target = tmp_path / "out" / "t.parquet"
    with atomic_path(target) as temporary:
        temporary.write_bytes(b"good")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_bytes(b"half writ")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"good"
    assert os.listdir(target.parent) == ["t.parquet"]
    assert oct(target.stat().st_mode & 0o777) == "0o644"
