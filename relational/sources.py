"""Reading a table's raw source (local path, glob or s3:// URI; Parquet or CSV) into a polars frame.

Every error names the table and the file. A file outside the spec's folder (and outside the operator's
``$KUMO_SHARED_DATA`` data root) may be read, but no message quotes its column names or values: a spec
pointing at some other file on the machine must not turn error messages into a way to read it.
"""

from __future__ import annotations

import csv
import glob
import gzip
import os
import re
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from relational.errors import SourceError, hidden_note, suggest_name
from relational.spec import GraphSpec

__all__ = [
    "expand_source",
    "find_ragged_row",
    "read_table_source",
    "repeated_header_names",
    "source_is_trusted",
    "table_is_trusted",
    "untrusted_column_names",
]

_GLOB_CHARS = set("*?[")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_READ_AS_TEXT = ("text", "id")  # stypes whose CSV columns are read as written, never as numbers
_PARSE_FAILURE = re.compile(r"could not parse `(.*?)` as dtype `(\w+)` at column '(.*?)'")
_REPEATED = re.compile(r"column with name '(.*?)' has more than one occurrence")
_RENAMED = re.compile(r"^(.+)_duplicated_\d+$")
_WIDE_INTEGERS = (pl.Int128, pl.UInt64, pl.UInt128)


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


def source_is_trusted(spec: GraphSpec, uri: str) -> bool:
    """Whether messages may quote a source's names and values: remote URIs, and local files that (with
    symlinks and ``..`` resolved) lie in the spec's folder or in ``$KUMO_SHARED_DATA``, the operator's data root."""
    if "://" in uri:
        return True
    path = Path(uri).expanduser().resolve()
    roots = [spec.path.parent if spec.path is not None else Path.cwd()]
    if os.environ.get("KUMO_SHARED_DATA"):
        roots.append(Path(os.environ["KUMO_SHARED_DATA"]).expanduser())
    return any(path.is_relative_to(root.resolve()) for root in roots)


def table_is_trusted(spec: GraphSpec, table: str) -> bool:
    """Whether every file of a table's source is trusted (an implied table: every table pointing at it)."""
    if spec.table(table).implied:
        return all(table_is_trusted(spec, child) for child, _ in spec.referencing(table))
    for source in spec.table(table).sources:
        uri = spec.resolve_source(source)
        try:
            files = expand_source(uri, table)
        except SourceError:
            files = [uri]
        if not all(source_is_trusted(spec, path) for path in files):
            return False
    return True


@dataclass(frozen=True)
class _Place:
    """One file of one table, and whether messages about it may quote its contents."""

    table: str
    uri: str
    fmt: str
    trusted: bool
    keys: frozenset[str] = frozenset()  # primary and foreign key columns of the table

    @property
    def remote(self) -> bool:
        return "://" in self.uri

    def error(self, problem: str) -> SourceError:
        kind = "CSV" if self.fmt == "csv" else "Parquet"
        return SourceError(f"table {self.table!r}: {kind} file {self.uri}: {problem}")


def read_table_source(
    spec: GraphSpec,
    table: str,
    storage_options: Mapping[str, str] | None = None,
    columns: list[str] | None = None,
) -> pl.DataFrame:
    """Read every file of a table's source into one frame, with clear errors naming the file.

    CSV columns declared ``text`` or ``id`` in ``stypes`` are read as text, as written (leading zeros kept),
    and so are Parquet integers beyond 64 bits so declared; such integers in any other column are refused.

    Args:
        columns: read only these columns (the others are never parsed); None reads all.
    """
    table_spec = spec.table(table)
    fmt = spec.source_format(table)
    as_text = [column for column, stype in table_spec.stypes.items() if stype in _READ_AS_TEXT]
    keys = frozenset(table_spec.primary_key_columns).union(*(fk.columns for fk in spec.foreign_keys(table)))
    frames = []
    places = []
    for source in table_spec.sources:
        for uri in expand_source(spec.resolve_source(source), table):
            place = _Place(table, uri, fmt, source_is_trusted(spec, uri), keys)
            places.append(place)
            frames.append(_read_one(place, storage_options, columns, as_text))
    if len(frames) == 1:
        return frames[0]
    try:
        return pl.concat(frames, how="vertical_relaxed")
    except (pl.exceptions.SchemaError, pl.exceptions.ShapeError, pl.exceptions.ComputeError) as exc:
        detail = str(exc).splitlines()[0] if all(p.trusted for p in places) else hidden_note("the details")
        raise SourceError(
            f"table {table!r}: its source files do not share one schema ({detail}); make the files' columns "
            "and types agree"
        ) from None


def _read_one(
    place: _Place, storage_options: Mapping[str, str] | None, columns: list[str] | None, as_text: list[str]
) -> pl.DataFrame:
    options = dict(storage_options or {}) if place.remote else None
    try:
        if place.fmt == "parquet":
            frame = pl.scan_parquet(place.uri, storage_options=options)
        else:
            if not place.remote:
                _check_csv_shape(place)
            overrides = dict.fromkeys(as_text, pl.String)
            frame = pl.scan_csv(place.uri, storage_options=options, infer_schema_length=10_000,
                                schema_overrides=overrides, separator=delimiter_of(place.uri))  # fmt: skip
        names = frame.collect_schema().names()
        _refuse_renamed_duplicates(place, names)
        if columns is not None:
            missing = [column for column in columns if column not in names]
            if missing:
                hint = suggest_name(missing[0], names) if place.trusted else f"; {_hidden_columns(names)}"
                raise place.error(f"lacks column(s) {missing} that graph.yaml names{hint}")
            frame = frame.select(columns)
        return _refuse_wide_integers(place, frame.collect(), as_text)
    except SourceError:
        raise
    except pl.exceptions.DuplicateError as exc:
        found = _REPEATED.search(str(exc))
        raise _repeated_names_error(place, [found.group(1)] if found else []) from None
    except FileNotFoundError:
        raise SourceError(
            f"table {place.table!r}: source {place.uri} does not exist: check the bucket and key"
        ) from None
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise _read_error(place, exc) from None


def _read_error(place: _Place, exc: Exception) -> SourceError:
    """A read failure explained: an overflowing or misfit CSV value names its column and row; else polars' words."""
    text = str(exc)
    message = text.splitlines()[0] if text else type(exc).__name__
    failure = _PARSE_FAILURE.search(text)
    if failure is not None and place.fmt == "csv":
        value, dtype, column = failure.groups()
        row = _csv_row_of(place.uri, column, value) if not place.remote else None
        at = f", data row {row}" if row else ""
        if not place.trusted:
            return place.error(
                f"a value cannot be read as {dtype} ({hidden_note('the column name and value')}); fix the "
                "value, or declare the column `text` or `id` in `stypes` to read it as text"
            )
        if re.fullmatch(r"[+-]?\d+", value.strip()):
            return place.error(_overflow_problem(place, column, value.strip(), at))
        return place.error(
            f"column {column!r}{at} holds {value!r}, but its first 10,000 rows read as {dtype}: fix the value, "
            f"or declare `stypes: {{{column}: text}}` (or `id` for a key) so the column is read as text"
        )
    if place.remote and _looks_missing(text):
        return SourceError(
            f"table {place.table!r}: source {place.uri} does not exist or is not readable with the configured "
            f"credentials ({message}); check the bucket, key and AWS_* settings"
        )
    detail = message if place.trusted else f"{type(exc).__name__}; {hidden_note('the details')}"
    return SourceError(f"table {place.table!r}: cannot read {place.fmt} source {place.uri}: {detail}")


def _overflow_problem(place: _Place, column: str, value: str, at: str) -> str:
    if column in place.keys:
        fix = (
            f"as it is a key, declare `stypes: {{{column}: id}}` so it is read as text (integer keys that "
            "point at it then match by their digits)"
        )
    else:
        fix = f"if it is a code rather than a quantity, declare `stypes: {{{column}: text}}` so it is read as text"
    return (
        f"column {column!r}{at} holds {value}, an integer beyond 64 bits (the largest is {_INT64_MAX:,}). "
        f"Fix the value, or, {fix}"
    )


def _refuse_wide_integers(place: _Place, frame: pl.DataFrame, as_text: list[str]) -> pl.DataFrame:
    """Integers beyond 64 bits become text where declared ``text``/``id``; elsewhere they are refused."""
    for name, dtype in frame.schema.items():
        if dtype not in _WIDE_INTEGERS:
            continue
        series = frame.get_column(name)
        wide = series > _INT64_MAX
        if dtype == pl.Int128:
            wide = wide | (series < _INT64_MIN)
        rows = wide.fill_null(False).arg_true()
        if rows.len() == 0:
            if dtype != pl.UInt64:  # 128-bit storage of 64-bit values: later stages expect Int64
                frame = frame.with_columns(series.cast(pl.Int64))
            continue
        if name in as_text:
            frame = frame.with_columns(series.cast(pl.String))
            continue
        row = int(rows[0])
        if not place.trusted:
            index = frame.columns.index(name) + 1
            raise place.error(
                f"column number {index} holds an integer beyond 64 bits ({hidden_note('its name and value')}); "
                "fix the value, or declare the column `text` (or `id` for a key) in `stypes` to read it as text"
            )
        raise place.error(_overflow_problem(place, name, str(series[row]), f", data row {row + 1}"))
    return frame


def _hidden_columns(names: list[str]) -> str:
    return f"it has {len(names)} column(s); {hidden_note('their names')}"


def _check_csv_shape(place: _Place) -> None:
    """Refuse repeated header names and ragged rows before polars silently renames or pads them."""
    repeated = repeated_header_names(place.uri)
    if repeated:
        raise _repeated_names_error(place, repeated)
    ragged = find_ragged_row(place.uri)
    if ragged is not None:
        line, expected, found = ragged
        raise SourceError(
            f"table {place.table!r}: CSV file {place.uri}, line {line}: has {found} fields but the header "
            f"has {expected}; fix that row (quote values that contain the separator)"
        )


def _refuse_renamed_duplicates(place: _Place, names: list[str]) -> None:
    """Remote CSV headers are not read by us: polars' ``<name>_duplicated_<n>`` renames give them away."""
    if place.fmt == "csv" and place.remote:
        renamed = [m.group(1) for m in map(_RENAMED.match, names) if m and m.group(1) in names]
        if renamed:
            raise _repeated_names_error(place, list(dict.fromkeys(renamed)))


def _repeated_names_error(place: _Place, names: list[str]) -> SourceError:
    count = len(names) or "some"
    shown = f"column name(s) {names}" if place.trusted else hidden_note(f"{count} repeated column name(s)")
    return place.error(
        f"the header repeats {shown}; every column needs its own name: rename or remove the repeated "
        "column(s) in the file (ingest never guesses which one is meant)"
    )


def delimiter_of(path: str) -> str:
    """The field separator of a delimited text source: a tab for ``.tsv`` (also gzipped), else a comma."""
    return "\t" if path.lower().endswith((".tsv", ".tsv.gz")) else ","


def _rows(handle, path: str) -> Iterator[list[str]]:
    """The rows of ``path``'s open handle, split by the separator its name implies."""
    return csv.reader(handle, delimiter=delimiter_of(path))


def _open_text(path: str):
    """A local delimited file opened as text, gunzipped when its name ends in ``.gz``."""
    opener = gzip.open if path.lower().endswith(".gz") else open
    return opener(path, "rt", newline="", encoding="utf-8", errors="replace")


def repeated_header_names(path: str) -> list[str]:
    """Column names that appear more than once in a local CSV file's header, in header order."""
    with _open_text(path) as handle:
        header = next(_rows(handle, path), None) or []
    counts = Counter(header)
    return [name for name in dict.fromkeys(header) if counts[name] > 1]


def _csv_row_of(path: str, column: str, value: str) -> int | None:
    """The 1-based data row of a local CSV where ``column`` holds ``value`` (None when not found)."""
    with _open_text(path) as handle:
        reader = _rows(handle, path)
        header = next(reader, None) or []
        if column not in header:
            return None
        index = header.index(column)
        for row_number, row in enumerate(reader, start=1):
            if len(row) > index and row[index].strip() == value.strip():
                return row_number
    return None


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
    with _open_text(path) as handle:
        reader = _rows(handle, path)
        header = next(reader, None)
        if header is None:
            return None
        expected = len(header)
        for row in reader:
            if row and len(row) != expected:
                return reader.line_num, expected, len(row)
    return None


def untrusted_column_names(spec: GraphSpec, metas: dict[str, dict]) -> set[str]:
    """Column names read from sources outside the spec's folder that graph.yaml does not name itself: the
    names a message about a query must not quote (see `source_is_trusted`)."""
    hidden: set[str] = set()
    for table, meta in metas.items():
        if table_is_trusted(spec, table):
            continue
        table_spec = spec.table(table)
        named = {*table_spec.primary_key_columns, *table_spec.own_time_columns, *table_spec.stypes}
        named.update(column for fk in spec.foreign_keys(table) for column in fk.columns)
        hidden.update(set(meta["stypes"]) - named)
    return hidden
