"""Reading a table's raw source (local path, glob or s3:// URI; Parquet or CSV) into a polars frame."""

from __future__ import annotations

import csv
import glob
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from relational.errors import SourceError
from relational.spec import GraphSpec

__all__ = ["expand_source", "find_ragged_row", "read_table_source"]

_GLOB_CHARS = set("*?[")


def expand_source(uri: str, table: str) -> list[str]:
    """Local sources become the sorted list of files they name; remote URIs are returned as they are."""
    if "://" in uri:
        return [uri]
    if _GLOB_CHARS & set(uri):
        matches = sorted(path for path in glob.glob(uri, recursive=True) if Path(path).is_file())
        if not matches:
            raise SourceError(
                f"table {table!r}: source pattern {uri} matches no file: check the path "
                "(relative paths start at the folder of graph.yaml)"
            )
        return matches
    if not Path(uri).is_file():
        raise SourceError(
            f"table {table!r}: source file {uri} does not exist: check the path "
            "(relative paths start at the folder of graph.yaml)"
        )
    return [uri]


def read_table_source(
    spec: GraphSpec,
    table: str,
    storage_options: Mapping[str, str] | None = None,
    columns: list[str] | None = None,
) -> pl.DataFrame:
    """Read every file of a table's source into one frame, with clear errors naming the file.

    Args:
        columns: read only these columns (the others are never parsed); None reads all.
    """
    table_spec = spec.table(table)
    fmt = spec.source_format(table)
    frames = []
    for source in table_spec.sources:
        for uri in expand_source(spec.resolve_source(source), table):
            frames.append(_read_one(uri, fmt, table, storage_options, columns))
    if len(frames) == 1:
        return frames[0]
    try:
        return pl.concat(frames, how="vertical_relaxed")
    except (pl.exceptions.SchemaError, pl.exceptions.ShapeError, pl.exceptions.ComputeError) as exc:
        raise SourceError(
            f"table {table!r}: its source files do not share one schema ({exc}); make the files' columns "
            "and types agree"
        ) from None


def _read_one(
    uri: str,
    fmt: str,
    table: str,
    storage_options: Mapping[str, str] | None,
    columns: list[str] | None,
) -> pl.DataFrame:
    remote = "://" in uri
    options = dict(storage_options or {}) if remote else None
    try:
        if fmt == "parquet":
            frame = pl.scan_parquet(uri, storage_options=options)
        else:
            if not remote:
                ragged = find_ragged_row(uri)
                if ragged is not None:
                    line, expected, found = ragged
                    raise SourceError(
                        f"table {table!r}: CSV file {uri}, line {line}: has {found} fields but the header "
                        f"has {expected}; fix that row (quote values that contain the separator)"
                    )
            frame = pl.scan_csv(uri, storage_options=options, infer_schema_length=10_000)
        if columns is not None:
            frame = frame.select(columns)
        return frame.collect()
    except SourceError:
        raise
    except pl.exceptions.ColumnNotFoundError as exc:
        raise SourceError(f"table {table!r}: source {uri} lacks a requested column ({exc})") from None
    except FileNotFoundError:
        raise SourceError(f"table {table!r}: source {uri} does not exist: check the bucket and key") from None
    except (OSError, pl.exceptions.ComputeError, pl.exceptions.PolarsError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if remote and _looks_missing(str(exc)):
            raise SourceError(
                f"table {table!r}: source {uri} does not exist or is not readable with the configured "
                f"credentials ({message}); check the bucket, key and AWS_* settings"
            ) from None
        raise SourceError(f"table {table!r}: cannot read {fmt} source {uri}: {message}") from None


def _looks_missing(message: str) -> bool:
    lowered = message.lower()
    return any(
        hint in lowered
        for hint in ("not found", "nosuchkey", "nosuchbucket", "404", "expanded paths were empty", "no such")
    )


def find_ragged_row(path: str) -> tuple[int, int, int] | None:
    """First data row whose field count differs from the header's: (line, expected, found), or None.

    polars reports long rows without a line number and silently pads short ones, so we look first.
    """
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return None
        expected = len(header)
        for row in reader:
            if row and len(row) != expected:
                return reader.line_num, expected, len(row)
    return None
