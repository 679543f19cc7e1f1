"""The data plane: the one place every artifact is written to and read from (a local folder or an S3 prefix).

Writes are all-or-nothing: a local file is written under a temporary name in the same folder and renamed
into place; an S3 object appears only when its single PUT completes. Readers never see half an artifact.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from stores.atomic import atomic_path
from stores.object_store import ObjectStoreConnector

__all__ = ["DataPlane"]


class DataPlane(BaseModel):
    """Artifact root: a local directory (default ``.kumo/data``) or an ``s3://bucket/prefix``."""

    model_config = ConfigDict(frozen=True)

    root: str
    object_store: ObjectStoreConnector = Field(default_factory=ObjectStoreConnector)

    @property
    def is_remote(self) -> bool:
        return self.root.startswith("s3://")

    def uri(self, *parts: str) -> str:
        """Full path or URI of an artifact below the root."""
        if self.is_remote:
            return "/".join([self.root.rstrip("/"), *parts])
        return str(Path(self.root).expanduser().resolve().joinpath(*parts))

    def put_bytes(self, data: bytes, *parts: str) -> str:
        """Write ``data`` atomically; return its URI."""
        uri = self.uri(*parts)
        if self.is_remote:
            bucket, key = _split_s3(uri)
            self.object_store.client().put_object(Bucket=bucket, Key=key, Body=data)
        else:
            with atomic_path(uri) as temporary:
                temporary.write_bytes(data)
        return uri

    def get_bytes(self, *parts: str) -> bytes:
        uri = self.uri(*parts)
        if self.is_remote:
            bucket, key = _split_s3(uri)
            client = self.object_store.client()
            try:
                return client.get_object(Bucket=bucket, Key=key)["Body"].read()
            except client.exceptions.NoSuchKey:
                raise FileNotFoundError(
                    f"{uri} does not exist: materialise the asset that writes it"
                ) from None
        try:
            return Path(uri).read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"{uri} does not exist: materialise the asset that writes it") from None

    def exists(self, *parts: str) -> bool:
        uri = self.uri(*parts)
        if not self.is_remote:
            return Path(uri).is_file()
        bucket, key = _split_s3(uri)
        listed = self.object_store.client().list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        return any(item["Key"] == key for item in listed.get("Contents", []))

    def put_file(self, source: str | Path, *parts: str) -> str:
        """Copy a local file to the artifact (streamed, multipart on S3); return its URI."""
        uri = self.uri(*parts)
        if self.is_remote:
            bucket, key = _split_s3(uri)
            self.object_store.client().upload_file(str(source), bucket, key)
        else:
            with atomic_path(uri) as temporary:
                shutil.copyfile(source, temporary)
        return uri

    def get_file(self, target: str | Path, *parts: str) -> Path:
        """Copy the artifact to the local file ``target`` (streamed); missing artifacts raise FileNotFoundError."""
        uri = self.uri(*parts)
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not self.is_remote:
            try:
                shutil.copyfile(uri, target)
            except FileNotFoundError:
                raise FileNotFoundError(
                    f"{uri} does not exist: materialise the asset that writes it"
                ) from None
            return target
        from botocore.exceptions import ClientError

        bucket, key = _split_s3(uri)
        try:
            self.object_store.client().download_file(bucket, key, str(target))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey"}:
                raise FileNotFoundError(
                    f"{uri} does not exist: materialise the asset that writes it"
                ) from None
            raise
        return target

    def put_json(self, payload: dict[str, Any], *parts: str) -> str:
        return self.put_bytes(json.dumps(payload, indent=1, sort_keys=True, default=str).encode(), *parts)

    def get_json(self, *parts: str) -> dict[str, Any]:
        return json.loads(self.get_bytes(*parts))

    def put_frame(self, frame: pl.DataFrame, *parts: str) -> tuple[str, str, int]:
        """Write a frame as zstd Parquet; return (uri, sha256 content hash, bytes)."""
        buffer = io.BytesIO()
        frame.write_parquet(buffer, compression="zstd", statistics=True)
        data = buffer.getvalue()
        return self.put_bytes(data, *parts), hashlib.sha256(data).hexdigest(), len(data)

    def get_frame(self, *parts: str, columns: list[str] | None = None) -> pl.DataFrame:
        """Read a Parquet artifact, fetching only ``columns`` when given."""
        uri = self.uri(*parts)
        if not self.is_remote:
            if not Path(uri).is_file():
                raise FileNotFoundError(f"{uri} does not exist: materialise the asset that writes it")
            return pl.read_parquet(uri, columns=columns)
        try:
            return pl.read_parquet(uri, columns=columns, storage_options=self.object_store.storage_options())
        except OSError as exc:
            if "not found" in str(exc).lower():
                raise FileNotFoundError(
                    f"{uri} does not exist: materialise the asset that writes it"
                ) from None
            raise


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key
