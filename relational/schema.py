"""The schema vocabulary every layer shares: a graph's tables, columns with stypes, keys and times, and the
names of the columns ingest adds (node ids, event times). Models import only this from the relational layer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from relational.spec import ForeignKey, GraphSpec

__all__ = ["EVENT_TIME", "NODE_ID", "GraphSchema", "TableSchema"]

NODE_ID = "_kumo_id"  # the node id ingest gives every row of a table with a primary key
EVENT_TIME = "_kumo_time"  # a row's time as UTC seconds since epoch, added by ingest


@dataclass(frozen=True)
class TableSchema:
    name: str
    stypes: dict[str, str]  # column -> semantic type
    primary_key: list[str]
    has_time: bool
    foreign_keys: list[ForeignKey] = field(default_factory=list)
    separators: dict[str, str] = field(default_factory=dict)  # delimited multicategorical column -> separator


@dataclass(frozen=True)
class GraphSchema:
    tables: dict[str, TableSchema]

    @classmethod
    def from_table_metadata(cls, spec: GraphSpec, metas: Mapping[str, dict]) -> GraphSchema:
        """Built from the JSON metadata ingest writes beside each validated table."""
        tables = {}
        for name, table_spec in spec.tables.items():
            decisions = metas[name]["stypes"]
            stypes = {column: decision["stype"] for column, decision in decisions.items()}
            separators = {column: d["separator"] for column, d in decisions.items() if d.get("separator")}
            tables[name] = TableSchema(name, stypes, table_spec.primary_key_columns, table_spec.has_time,
                                       spec.foreign_keys(name), separators)  # fmt: skip
        return cls(tables)

    @classmethod
    def from_built_tables(cls, spec: GraphSpec, built: Mapping) -> GraphSchema:
        """Built from tables validated in memory (`relational.graph_tables.ingest_in_memory`)."""
        return cls.from_table_metadata(spec, {name: table.meta for name, table in built.items()})
