"""Store versions travel through the data plane, so trials on other machines (Kubernetes pods) can use them.

Graph and feature stores are memory-mapped, so they live on a local disk. The machine that builds a version
publishes its files to ``<graph>/<kind>/<version>/`` on the data plane, then the version's file list
(``files.json``, the completeness marker) and the ``CURRENT`` pointer. A trial elsewhere fetches the version
it was given into its node-local cache once: files land in a staging folder renamed into place, so
concurrent trials on one node never see half a version and all but the first find it already there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from stores.data_plane import DataPlane

__all__ = ["FILE_LIST", "StoreSyncError", "fetch_version", "publish_version"]

FILE_LIST = "files.json"
TRANSFER_THREADS = 8


class StoreSyncError(Exception):
    """A store version is missing from the data plane or arrived incomplete."""


def _is_same_place(data_plane: DataPlane, version_dir: Path, graph: str) -> bool:
    """Whether the data plane is the local folder the store already lives in (the embedded default)."""
    if data_plane.is_remote:
        return False
    return Path(data_plane.uri(graph, version_dir.parent.name, version_dir.name)) == version_dir.resolve()


def publish_version(data_plane: DataPlane, version_dir: Path, graph: str) -> str:
    """Upload the version at ``<local root>/<graph>/<kind>/<version>``; return its data-plane URI.

    Idempotent: versions are content-addressed, so one whose file list is already there is not sent again.
    """
    version_dir = Path(version_dir)
    kind, version = version_dir.parent.name, version_dir.name
    parts = (graph, kind, version)
    if _is_same_place(data_plane, version_dir, graph):
        return str(version_dir.resolve())
    if not data_plane.exists(*parts, FILE_LIST):
        files = sorted(path for path in version_dir.rglob("*") if path.is_file())
        listing = [
            {"path": path.relative_to(version_dir).as_posix(), "bytes": path.stat().st_size} for path in files
        ]
        with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
            list(pool.map(lambda path, entry: data_plane.put_file(path, *parts, *entry["path"].split("/")),
                          files, listing))  # fmt: skip
        data_plane.put_json({"version": version, "files": listing}, *parts, FILE_LIST)  # last: the marker
    data_plane.put_bytes(version.encode(), graph, kind, "CURRENT")
    return data_plane.uri(*parts)


def fetch_version(data_plane: DataPlane, local_dir: Path, graph: str, version: str | None = None) -> Path:
    """The local directory of ``version`` (default: the data plane's CURRENT) under ``local_dir``
    (``<local root>/<graph>/<kind>``), fetched from the data plane unless it is already there."""
    local_dir = Path(local_dir)
    kind = local_dir.name
    what = kind.replace("_", " ")
    if version is None:
        try:
            version = data_plane.get_bytes(graph, kind, "CURRENT").decode().strip()
        except FileNotFoundError:
            raise StoreSyncError(
                f"no {what} of graph {graph!r} on the data plane {data_plane.uri(graph, kind)}: "
                f"materialise the {graph}/{kind} asset, which publishes it"
            ) from None
    target = local_dir / version
    if target.is_dir():
        return target
    try:
        listing = data_plane.get_json(graph, kind, version, FILE_LIST)
    except FileNotFoundError:
        raise StoreSyncError(
            f"{what} version {version} of graph {graph!r} is not on the data plane "
            f"({data_plane.uri(graph, kind, version)}): re-materialise the {graph}/{kind} asset, which publishes it"
        ) from None
    local_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fetching-", dir=local_dir))

    def download(entry: dict) -> None:
        destination = staging / entry["path"]
        data_plane.get_file(destination, graph, kind, version, *entry["path"].split("/"))
        if destination.stat().st_size != entry["bytes"]:
            raise StoreSyncError(
                f"{data_plane.uri(graph, kind, version, entry['path'])} has {destination.stat().st_size} bytes, "
                f"its file list says {entry['bytes']}: re-materialise the {graph}/{kind} asset"
            )

    try:
        with ThreadPoolExecutor(TRANSFER_THREADS) as pool:  # object stores serve many small GETs in parallel
            list(pool.map(download, listing["files"]))
        try:
            os.replace(staging, target)
        except OSError:
            if not target.is_dir():  # anything but "another trial on this node fetched it first"
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
