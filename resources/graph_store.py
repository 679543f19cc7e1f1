"""The graph store: CSC adjacency per edge type, time-sorted neighbourhoods, opened with mmap.

One version is a directory named by its content hash:
    manifest.json                      node types (count, has time), edge types (files, dtypes, counts)
    nodes/<type>.time.npy              int64 seconds per node (temporal types only)
    edges/<src>__<rel>__<dst>.indptr.npy   n_dst + 1 offsets (int32 when edge counts fit, else int64)
    edges/<src>__<rel>__<dst>.indices.npy  int32 when ids fit, else int64: source ids, each destination's
                                           neighbourhood sorted by source time ascending
Every process that opens a version maps the same files, so the page cache holds one copy per machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np
import polars as pl
from dagster import ConfigurableResource

__all__ = [
    "FORMAT_VERSION",
    "EdgeList",
    "GraphStoreError",
    "GraphStoreResource",
    "StoredGraph",
    "build_graph_store",
    "csc_from_edges",
    "open_graph_store",
]

FORMAT_VERSION = 1
EdgeType = tuple[str, str, str]


class GraphStoreError(Exception):
    """A graph store cannot be opened as asked: missing, truncated, or another version than expected."""


@dataclass(frozen=True)
class EdgeList:
    """One foreign key as edges: child node ``src[i]`` points at parent node ``dst[i]``."""

    child: str
    name: str
    parent: str
    src: np.ndarray
    dst: np.ndarray
    dropped: int = 0  # rows whose key was null or dangling


def csc_from_edges(
    src: np.ndarray, dst: np.ndarray, num_dst: int, index_dtype: np.dtype, indptr_dtype: np.dtype = np.int64
) -> tuple[np.ndarray, np.ndarray]:
    """CSC over the destination by a stable counting sort, so each neighbourhood keeps source-id order.

    Node ids follow time order (ingest sorts rows by time), hence neighbourhoods come out time-sorted.
    """
    if len(src) > 1 and np.any(src[1:] < src[:-1]):
        order = np.argsort(src, kind="stable")
        src, dst = src[order], dst[order]
    counts = np.bincount(dst, minlength=num_dst).astype(indptr_dtype)
    indptr = np.zeros(num_dst + 1, dtype=indptr_dtype)
    np.cumsum(counts, out=indptr[1:])
    indices = np.empty(len(src), dtype=index_dtype)
    _scatter(np.ascontiguousarray(src), np.ascontiguousarray(dst), indptr, indices)
    return indptr, indices


@numba.njit(cache=True)
def _scatter(src, dst, indptr, indices):
    cursor = indptr[:-1].copy()
    for i in range(len(src)):
        target = dst[i]
        indices[cursor[target]] = src[i]
        cursor[target] += 1


def _edge_key(edge_type: EdgeType) -> str:
    return "__".join(edge_type)


def build_graph_store(
    root: str | Path,
    node_counts: Mapping[str, int],
    node_times: Mapping[str, np.ndarray],
    edges: list[EdgeList],
    extra: dict | None = None,
    node_keys: Mapping[str, pl.DataFrame] | None = None,
) -> tuple[Path, dict]:
    """Write a new version under ``root`` atomically and return (its directory, its manifest).

    Args:
        node_times: int64 seconds per node for temporal node types (node ids must be in time order).
        edges: one `EdgeList` per foreign key; both directions are stored.
        node_keys: per node type, the primary-key columns in node-id order (the key -> node id map).
    """
    started = time.perf_counter()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
    try:
        (staging / "nodes").mkdir()
        (staging / "edges").mkdir()
        digest = hashlib.blake2b(digest_size=16)
        # int32 ids and offsets whenever they fit: 4 bytes per stored id, 4 per offset
        int32_max = np.iinfo(np.int32).max
        index_dtype = np.int32 if max(node_counts.values(), default=0) <= int32_max else np.int64
        indptr_dtype = np.int32 if max((len(e.src) for e in edges), default=0) <= int32_max else np.int64
        node_meta = {}
        for node_type in sorted(node_counts):
            node_meta[node_type] = {"count": int(node_counts[node_type]), "time": node_type in node_times}
            if node_type in node_times:
                times = np.ascontiguousarray(node_times[node_type], dtype=np.int64)
                if len(times) != node_counts[node_type]:
                    raise GraphStoreError(
                        f"node type {node_type!r}: {len(times)} times for {node_counts[node_type]} nodes"
                    )
                if len(times) > 1 and np.any(times[1:] < times[:-1]):
                    raise GraphStoreError(f"node type {node_type!r}: node ids must follow time order")
                _save(staging / "nodes" / f"{node_type}.time.npy", times, digest)
            if node_keys is not None and node_type in node_keys:
                keys_path = staging / "nodes" / f"{node_type}.keys.parquet"
                node_keys[node_type].write_parquet(keys_path)
                digest.update(keys_path.read_bytes())
                node_meta[node_type]["keys"] = node_keys[node_type].columns
        edge_meta = {}
        for edge in edges:
            forward = (edge.child, edge.name, edge.parent)
            backward = (edge.parent, f"rev_{edge.name}", edge.child)
            for edge_type, src, dst in ((forward, edge.src, edge.dst), (backward, edge.dst, edge.src)):
                indptr, indices = csc_from_edges(
                    src, dst, node_counts[edge_type[2]], index_dtype, indptr_dtype
                )
                key = _edge_key(edge_type)
                _save(staging / "edges" / f"{key}.indptr.npy", indptr, digest)
                _save(staging / "edges" / f"{key}.indices.npy", indices, digest)
                degrees = np.diff(indptr)
                edge_meta[key] = {
                    "type": list(edge_type),
                    "edges": len(indices),
                    "index_dtype": str(indices.dtype),
                    "indptr_dtype": str(indptr.dtype),
                    "dropped_rows": int(edge.dropped),
                    "degree": {
                        "mean": float(degrees.mean()) if len(degrees) else 0.0,
                        "max": int(degrees.max()) if len(degrees) else 0,
                        "p99": float(np.percentile(degrees, 99)) if len(degrees) else 0.0,
                    },
                }
        version = digest.hexdigest()[:20]
        total_edges = sum(meta["edges"] for meta in edge_meta.values())
        total_bytes = sum(path.stat().st_size for path in staging.rglob("*.npy"))
        manifest = {
            "format_version": FORMAT_VERSION,
            "version": version,
            "node_types": node_meta,
            "edge_types": edge_meta,
            "edges": total_edges,
            "bytes": total_bytes,
            "bytes_per_edge": total_bytes / max(total_edges, 1),
            "build_seconds": time.perf_counter() - started,
            **(extra or {}),
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        target = root / version
        if target.exists():
            shutil.rmtree(staging)  # same content already published
        else:
            os.replace(staging, target)
        _write_pointer(root, version)
        return target, json.loads((target / "manifest.json").read_text())
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _save(path: Path, array: np.ndarray, digest) -> None:
    np.save(path, array, allow_pickle=False)
    digest.update(path.name.encode())
    digest.update(np.ascontiguousarray(array).view(np.uint8).data)


def _write_pointer(root: Path, version: str) -> None:
    handle, name = tempfile.mkstemp(prefix=".CURRENT.", dir=root)
    with os.fdopen(handle, "w") as pointer:
        pointer.write(version)
    os.replace(name, root / "CURRENT")


@dataclass
class StoredGraph:
    """An opened version: read-only memory-mapped arrays shared by every process on the machine."""

    path: Path
    manifest: dict
    node_times: dict[str, np.ndarray] = field(default_factory=dict)
    csc: dict[EdgeType, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def node_counts(self) -> dict[str, int]:
        return {name: meta["count"] for name, meta in self.manifest["node_types"].items()}

    @property
    def edge_types(self) -> list[EdgeType]:
        return [tuple(meta["type"]) for meta in self.manifest["edge_types"].values()]


def open_graph_store(root: str | Path, version: str | None = None) -> StoredGraph:
    """Map a version (default: the latest written) and check every file against the manifest."""
    root = Path(root)
    if version is None:
        try:
            version = (root / "CURRENT").read_text().strip()
        except FileNotFoundError:
            raise GraphStoreError(
                f"no graph store under {root}: materialise the graph_store asset first"
            ) from None
    path = root / version
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except FileNotFoundError:
        raise GraphStoreError(f"graph store version {version!r} does not exist under {root}") from None
    if manifest.get("format_version") != FORMAT_VERSION or manifest.get("version") != version:
        raise GraphStoreError(
            f"{path}: manifest says format {manifest.get('format_version')} version {manifest.get('version')!r}, "
            f"expected format {FORMAT_VERSION} version {version!r}; rebuild the graph store"
        )
    graph = StoredGraph(path, manifest)
    for node_type, meta in manifest["node_types"].items():
        if meta["time"]:
            graph.node_times[node_type] = _map(
                path / "nodes" / f"{node_type}.time.npy", (meta["count"],), "int64"
            )
    for key, meta in manifest["edge_types"].items():
        edge_type = tuple(meta["type"])
        num_dst = manifest["node_types"][edge_type[2]]["count"]
        indptr = _map(path / "edges" / f"{key}.indptr.npy", (num_dst + 1,), meta["indptr_dtype"])
        indices = _map(path / "edges" / f"{key}.indices.npy", (meta["edges"],), meta["index_dtype"])
        if num_dst and int(indptr[-1]) != meta["edges"]:
            raise GraphStoreError(
                f"{path}: {key} indptr ends at {int(indptr[-1])}, expected {meta['edges']} edges"
            )
        graph.csc[edge_type] = (indptr, indices)
    return graph


def _map(path: Path, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise GraphStoreError(f"{path} is missing: the graph store is incomplete; rebuild it") from None
    except ValueError as exc:
        raise GraphStoreError(f"{path} is truncated or corrupt ({exc}); rebuild the graph store") from None
    if array.shape != shape or str(array.dtype) != dtype:
        raise GraphStoreError(
            f"{path} holds {array.dtype}{array.shape}, expected {dtype}{shape}; rebuild the graph store"
        )
    return array


class GraphStoreResource(ConfigurableResource):
    """Opens graph-store versions under a local root (mmap needs a local file system)."""

    root: str

    def open(self, graph: str, version: str | None = None) -> StoredGraph:
        return open_graph_store(Path(self.root) / graph / "graph_store", version)

    def node_keys(self, stored: StoredGraph, node_type: str) -> pl.DataFrame:
        """The primary-key values of ``node_type`` in node-id order (row i is node i)."""
        return pl.read_parquet(stored.path / "nodes" / f"{node_type}.keys.parquet")
