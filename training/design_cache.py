"""GBDT design matrices shared through the node's cache (`stores.batch_cache`): every GBDT trial of a study
propositionalises the same rows of the same tables (only LightGBM's parameters differ), so the first trial
builds the features and the others read them, or wait for the builder instead of building alongside it
(completejourney churn: 20 s of features in a 29 s trial; docs/benchmarks.md).

The key covers everything the features are a function of: the tables' versions (their content hashes),
the entity table, the rows (node id, anchor, cutoff), the feature settings, the frozen-database cutoff,
the masked columns, the category vocabulary's cutoff and the feature code itself (its source files' hash),
so a change to any of them builds anew rather than reading features made otherwise.
"""

from __future__ import annotations

import functools
import hashlib
import io
from collections.abc import Collection, Mapping
from pathlib import Path

import polars as pl

import models.propositional
from models.propositional import build_relational_features
from models.propositional_config import PropositionalConfig
from relational.schema import GraphSchema
from stores.batch_cache import BatchCache

__all__ = ["DESIGN_LOCK_SECONDS", "design_cache", "design_key", "relational_features"]

# How long a trial waits for another process building the same features (a dead builder is noticed sooner,
# by its pid): the minibatch cache's two minutes are shorter than a feature build under contention.
DESIGN_LOCK_SECONDS = 3600.0


def design_cache(cache: BatchCache) -> BatchCache:
    """The node cache ``cache`` uses, with a wait long enough for a feature build."""
    return BatchCache(cache.directory, cache.max_bytes, lock_timeout=DESIGN_LOCK_SECONDS)


def design_key(
    tables_version: str,
    entity_table: str,
    entities: pl.DataFrame,
    config: PropositionalConfig,
    data_cutoff: int | None,
    masked: Mapping[str, Collection[str]] | None,
    vocabulary_limit: int | None = None,
) -> str:
    """The cache key of the features of ``entities`` (`models.propositional.build_relational_features`)."""
    digest = hashlib.sha256()
    hidden = sorted((table, sorted(columns)) for table, columns in (masked or {}).items())
    settings = (repr(config), repr(data_cutoff), repr(hidden), repr(vocabulary_limit))
    for part in (tables_version, entity_table, *settings, _feature_code()):
        digest.update(part.encode() + b"\0")
    digest.update(_ipc(entities))
    return f"gbdt-design-{digest.hexdigest()}"


def relational_features(
    frames: Mapping[str, pl.DataFrame],
    schema: GraphSchema,
    entity_table: str,
    entities: pl.DataFrame,
    config: PropositionalConfig,
    data_cutoff: int | None,
    vocabulary_limit: int,
    masked: Mapping[str, Collection[str]] | None = None,
    cache: BatchCache | None = None,
    tables_version: str | None = None,
) -> pl.DataFrame:
    """`build_relational_features` of ``entities``; with ``cache`` and ``tables_version`` (what identifies
    ``frames``: their content hashes) read from the cache, or built once across the node's processes."""

    def build() -> pl.DataFrame:
        return build_relational_features(frames, schema, entity_table, entities, config, data_cutoff,
                                         vocabulary_limit, masked)  # fmt: skip

    if cache is None or tables_version is None:
        return build()
    key = design_key(tables_version, entity_table, entities, config, data_cutoff, masked, vocabulary_limit)
    built: list[pl.DataFrame] = []

    def build_bytes() -> bytes:
        built.append(build())
        return _ipc(built[0])

    payload = cache.get_or_build(key, build_bytes)
    return built[0] if built else pl.read_ipc(io.BytesIO(payload))


def _ipc(frame: pl.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.write_ipc(buffer, compression="uncompressed")
    return buffer.getvalue()


@functools.cache
def _feature_code() -> str:
    """A hash of the propositional feature modules' source: features built by other code are not reused."""
    folder = Path(models.propositional.__file__).parent
    digest = hashlib.sha256()
    for path in sorted(folder.glob("propositional*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]
