"""Content-addressed version directories: build in a staging folder, publish by one rename, point CURRENT.

Shared by the graph store and the feature store: a crash leaves only a `.building-*` folder behind, never a
half-written version, and readers resolve `CURRENT` (or an explicit version) to a complete directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from stores.atomic import write_atomically

__all__ = ["VersionBuilder", "building_version", "publish", "read_manifest", "resolve_version", "save_array"]


class VersionBuilder:
    """A staging directory plus the running content hash of everything written into it."""

    def __init__(self, staging: Path) -> None:
        self.staging = staging
        self.digest = hashlib.blake2b(digest_size=16)

    def hash_bytes(self, name: str, data) -> None:
        self.digest.update(name.encode())
        self.digest.update(data)

    @property
    def version(self) -> str:
        return self.digest.hexdigest()[:20]


def save_array(builder: VersionBuilder, relative: str, array: np.ndarray) -> Path:
    """Save ``array`` as .npy under the staging directory and add it to the content hash."""
    path = builder.staging / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    contiguous = np.ascontiguousarray(array)
    np.save(path, contiguous, allow_pickle=False)
    builder.hash_bytes(relative, contiguous.view(np.uint8).data)
    return path


@contextlib.contextmanager
def building_version(root: str | Path) -> Iterator[VersionBuilder]:
    """Yield a builder; on success the caller calls `publish` through the returned object's staging path."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        yield VersionBuilder(staging)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def publish(
    builder: VersionBuilder, manifest: dict, manifest_name: str = "manifest.json"
) -> tuple[Path, dict]:
    """Write the manifest (with ``version``), rename the staging folder into place and point CURRENT at it."""
    root = builder.staging.parent
    version = builder.version
    manifest = {**manifest, "version": version}
    (builder.staging / manifest_name).write_text(json.dumps(manifest, indent=1, sort_keys=True))
    target = root / version
    if target.exists():
        shutil.rmtree(builder.staging)  # the same content is already published
    else:
        os.replace(builder.staging, target)
    write_atomically(root / "CURRENT", version)
    return target, json.loads((target / manifest_name).read_text())


def resolve_version(root: str | Path, version: str | None, what: str, error: type[Exception]) -> Path:
    """The directory of ``version`` (default: CURRENT) or a clear error naming what to materialise."""
    root = Path(root)
    if version is None:
        try:
            version = (root / "CURRENT").read_text().strip()
        except FileNotFoundError:
            raise error(f"no {what} under {root}: materialise the {what} asset first") from None
    path = root / version
    if not path.is_dir():
        raise error(f"{what} version {version!r} does not exist under {root}")
    return path


def read_manifest(path: Path, name: str, format_version: int, error: type[Exception]) -> dict:
    """Load a version's manifest and check it is the format and version this code reads."""
    try:
        manifest = json.loads((path / name).read_text())
    except FileNotFoundError:
        raise error(f"{path / name} is missing: the version is incomplete; rebuild it") from None
    if manifest.get("format_version") != format_version or manifest.get("version") != path.name:
        raise error(
            f"{path}: manifest says format {manifest.get('format_version')} version {manifest.get('version')!r}, "
            f"expected format {format_version} version {path.name!r}; rebuild it"
        )
    return manifest
