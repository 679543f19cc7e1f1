"""Helpers for query tests: a graph's schema and validated tables, built in memory."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from relational.graph_tables import ingest_in_memory
from relational.schema import GraphSchema
from relational.spec_loader import load_spec


def in_memory_graph(spec_path: Path) -> tuple[GraphSchema, dict[str, pl.DataFrame]]:
    spec = load_spec(spec_path)
    built = ingest_in_memory(spec)
    return GraphSchema.from_built_tables(spec, built), {name: table.frame for name, table in built.items()}
