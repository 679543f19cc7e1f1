"""The graph spec (graph.yaml): tables, their sources, keys and time columns, strictly validated.

A minimal spec stays small (DESIGN.md section 3); extensions are optional keys:
``time_from`` (a time inherited through a foreign key, with an offset), ``implied`` (an entity table
that has no source and is made of the distinct values of the foreign keys that point at it),
``time_column: {date, time_of_day}`` (a date plus a clock-time column), ``drop_columns``,
``null_values`` and ``timezone`` (for naive timestamps).
"""

from __future__ import annotations

import os
import re
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from relational.errors import SpecError, suggest_name

__all__ = [
    "SEMANTIC_TYPES",
    "DateAndTimeOfDay",
    "ForeignKey",
    "GraphSpec",
    "SemanticType",
    "TableSpec",
    "TimeFrom",
    "format_from_extension",
    "parse_offset",
]

SemanticType = Literal["numerical", "categorical", "multicategorical", "text", "timestamp", "id"]
SEMANTIC_TYPES: tuple[str, ...] = SemanticType.__args__  # type: ignore[attr-defined]
DEFAULT_NULL_VALUES: tuple[str, ...] = ("", "\\N", "NULL", "null", "NA", "N/A", "NaN", "nan", "None")
_OFFSET = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*([a-z]+)\s*$")
_UNIT_SECONDS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
    **dict.fromkeys(("w", "week", "weeks"), 604800),
}


def parse_offset(value: str | int) -> int:
    """Turn ``-1 day``, ``-1d``, ``2 hours`` or an integer number of seconds into whole seconds."""
    if isinstance(value, bool):
        raise ValueError(f"offset must be a duration such as '-1 day' or a number of seconds, got {value!r}")
    if isinstance(value, int):
        return value
    match = _OFFSET.match(value.lower())
    if match is None or match.group(2) not in _UNIT_SECONDS:
        raise ValueError(
            f"offset {value!r} is not a duration: write a number and a unit, e.g. '-1 day', '6h', '30 min' "
            f"(units: {', '.join(sorted(set(_UNIT_SECONDS)))}; months and years have no fixed length)"
        )
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds != int(seconds):
        raise ValueError(f"offset {value!r} is not a whole number of seconds")
    return int(seconds)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DateAndTimeOfDay(_Strict):
    """An event time split over a date column and an optional clock-time column (HH:MM[:SS], UTC)."""

    date: str
    time_of_day: str | None = None


class TimeFrom(_Strict):
    """A time inherited from the parent row a foreign key points at, shifted by ``offset``."""

    foreign_key: str
    offset: str | int = 0

    @field_validator("offset")
    @classmethod
    def _offset_is_duration(cls, value: str | int) -> str | int:
        parse_offset(value)
        return value

    @property
    def offset_seconds(self) -> int:
        return parse_offset(self.offset)


class ForeignKeyTarget(_Strict):
    """Long form of a foreign key, needed when it spans several columns (a composite key)."""

    table: str
    columns: list[str] = Field(min_length=1)


class TableSpec(_Strict):
    """One table of the graph: where it comes from and how its rows link and live in time."""

    source: str | list[str] | None = None
    format: Literal["parquet", "csv"] | None = None
    primary_key: str | list[str] | None = None
    time_column: str | DateAndTimeOfDay | None = None
    time_from: TimeFrom | None = None
    end_time_column: str | None = None
    foreign_keys: dict[str, str | ForeignKeyTarget] = Field(default_factory=dict)
    stypes: dict[str, SemanticType] = Field(default_factory=dict)
    implied: bool = False
    drop_columns: list[str] = Field(default_factory=list)
    null_values: list[str] | None = None
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"unknown time zone {value!r}: use an IANA name such as 'UTC' or 'America/New_York'"
                ) from None
        return value

    @property
    def primary_key_columns(self) -> list[str]:
        if self.primary_key is None:
            return []
        return [self.primary_key] if isinstance(self.primary_key, str) else list(self.primary_key)

    @property
    def sources(self) -> list[str]:
        if self.source is None:
            return []
        return [self.source] if isinstance(self.source, str) else list(self.source)

    @property
    def has_time(self) -> bool:
        return self.time_column is not None or self.time_from is not None

    @property
    def own_time_columns(self) -> list[str]:
        """Columns the event time is read from (empty when inherited or static)."""
        if self.time_column is None:
            return []
        if isinstance(self.time_column, str):
            return [self.time_column]
        return [c for c in (self.time_column.date, self.time_column.time_of_day) if c is not None]


@dataclass(frozen=True)
class ForeignKey:
    """A resolved foreign key: ``columns`` of the child point at the primary key of ``table``."""

    name: str
    columns: tuple[str, ...]
    table: str

    @property
    def id_column(self) -> str:
        """Column of the validated table holding the parent's node id (null when dangling or null)."""
        return f"_kumo_fk__{self.name}"


class GraphSpec(_Strict):
    """A whole graph: its tables, keyed by name. ``path`` is the spec file sources are relative to."""

    name: str | None = None
    tables: dict[str, TableSpec] = Field(min_length=1)
    _path: Path | None = PrivateAttr(default=None)

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def graph_name(self) -> str:
        if self.name:
            return self.name
        stem = self.path.parent.name if self.path is not None else "graph"
        return re.sub(r"[^A-Za-z0-9_]", "_", stem) or "graph"

    def table(self, name: str) -> TableSpec:
        if name not in self.tables:
            raise SpecError(f"unknown table {name!r}{suggest_name(name, self.tables)}")
        return self.tables[name]

    def foreign_keys(self, table: str) -> list[ForeignKey]:
        result = []
        for name, target in self.table(table).foreign_keys.items():
            if isinstance(target, ForeignKeyTarget):
                result.append(ForeignKey(name, tuple(target.columns), target.table))
            else:
                result.append(ForeignKey(name, (name,), target.split(".", 1)[0]))
        return result

    def foreign_key(self, table: str, name: str) -> ForeignKey:
        for fk in self.foreign_keys(table):
            if fk.name == name:
                return fk
        raise SpecError(f"table {table!r} has no foreign key {name!r}")

    def parents(self, table: str) -> list[str]:
        """Tables this table's ingest reads: foreign-key targets other than itself, in spec order."""
        return list(dict.fromkeys(fk.table for fk in self.foreign_keys(table) if fk.table != table))

    def referencing(self, table: str) -> list[tuple[str, ForeignKey]]:
        """Every (child table, foreign key) pointing at ``table``."""
        return [(child, fk) for child in self.tables for fk in self.foreign_keys(child) if fk.table == table]

    def resolve_source(self, source: str) -> str:
        """A source as an absolute path or URI: local paths are relative to the spec file."""
        source = _expand_variables(source)
        if "://" in source:
            return source
        path = Path(source).expanduser()
        if not path.is_absolute() and self.path is not None:
            path = self.path.parent / path
        return str(path)

    def source_format(self, table: str) -> str:
        spec = self.table(table)
        if spec.format is not None:
            return spec.format
        return format_from_extension(spec.sources[0])


def _expand_variables(source: str) -> str:
    """Expand ``${VAR}`` in a source (e.g. a bucket name per environment); an unset variable is an error."""
    missing = [name for name in re.findall(r"\$\{(\w+)\}", source) if name not in os.environ]
    if missing:
        raise SpecError(f"source {source!r} uses environment variable(s) {missing} that are not set")
    return os.path.expandvars(source)


def format_from_extension(source: str) -> str:
    lowered = source.lower()
    if lowered.endswith((".parquet", ".pq", ".parquet*", "*.parquet")):
        return "parquet"
    if lowered.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt")):
        return "csv"
    raise ValueError(
        f"cannot tell the format of {source!r} from its extension: add `format: parquet` or `format: csv`"
    )
